/* Preemption off-cluster: signals (with chaining and restoration of the previous handler), the halt
 * file, the job's end time, acknowledgement variants. */
#include "check.h"

#include <signal.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t user_handler_calls = 0;
static void user_handler(int sig) {
    (void)sig;
    user_handler_calls++;
}

static det_context *open_with(det_init_options *o) {
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(o, &ctx));
    return ctx;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int wait_for_preempt(det_context *ctx, double seconds) {
    double end = now() + seconds;
    bool b = false;
    while (now() < end) {
        if (det_should_preempt(ctx, &b) != DET_OK) return -1;
        if (b) return 1;
        usleep(10000);
    }
    return 0;
}

static void sigterm_by_default(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("sig"), "sig");
    det_context *ctx = open_with(&o);
    bool b = true;
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    raise(SIGTERM); /* would kill the process without detcore's handler */
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(b);
    CHECK_OK(det_should_preempt(ctx, &b)); /* sticky */
    CHECK(b);
    CHECK_OK(det_preempt_acknowledge(ctx));
    bool known = true;
    double secs = 1;
    CHECK_OK(det_preempt_seconds_remaining(ctx, &known, &secs));
    CHECK(!known && secs == 0);
    CHECK_OK(det_core_close(ctx));
}

static void chains_and_restores_previous_handler(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = user_handler;
    sigaction(SIGUSR1, &sa, &old);
    user_handler_calls = 0;

    det_init_options o;
    test_options(&o, test_tmpdir("chain"), "chain");
    det_context *ctx = open_with(&o);
    bool b = true;
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    raise(SIGUSR1);
    CHECK(user_handler_calls == 1); /* the program's own handler still runs */
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(b);
    CHECK_OK(det_core_close(ctx));

    /* After close the program's handler is back in place, alone. */
    struct sigaction now_sa;
    sigaction(SIGUSR1, NULL, &now_sa);
    CHECK(now_sa.sa_handler == user_handler);
    raise(SIGUSR1);
    CHECK(user_handler_calls == 2);

    /* A new context starts with no pending signal. */
    ctx = open_with(&o);
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    CHECK_OK(det_core_close(ctx));
    sigaction(SIGUSR1, &old, NULL);
}

static void configured_signals_only(void) {
    struct sigaction sa, old1, old2;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = user_handler;
    sigaction(SIGUSR1, &sa, &old1);
    det_init_options o;
    test_options(&o, test_tmpdir("custom"), "custom");
    int sigs[] = {SIGUSR2};
    o.preempt_signals = sigs;
    o.preempt_signals_len = 1;
    det_context *ctx = open_with(&o);
    bool b = true;
    raise(SIGUSR1);
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    raise(SIGUSR2);
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(b);
    CHECK_OK(det_core_close(ctx));
    sigaction(SIGUSR2, NULL, &old2);
    CHECK(old2.sa_handler == SIG_DFL);

    /* disable_signal_handlers installs nothing. */
    test_options(&o, test_tmpdir("nosig"), "nosig");
    o.disable_signal_handlers = true;
    ctx = open_with(&o);
    struct sigaction cur;
    sigaction(SIGTERM, NULL, &cur);
    CHECK(cur.sa_handler == SIG_DFL);
    CHECK_OK(det_core_close(ctx));

    /* A bool byte that is neither 0 nor 1 (a Fortran logical, a struct filled by memset) counts
     * as true, like C's `if (x)`. */
    test_options(&o, test_tmpdir("nosig2"), "nosig2");
    memset(&o.disable_signal_handlers, 0xff, sizeof o.disable_signal_handlers);
    ctx = open_with(&o);
    sigaction(SIGTERM, NULL, &cur);
    CHECK(cur.sa_handler == SIG_DFL);
    CHECK_OK(det_core_close(ctx));
    sigaction(SIGUSR1, &old1, NULL);
}

/* Signals that cannot mean preemption are refused at init, clearly and at once (glibc's reserved
 * 32 and 33 used to hang det_core_init; a SIGSEGV handler made a real fault loop forever). */
static void refuses_reserved_and_fault_signals(void) {
    int bad[] = {32, 33, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGKILL, SIGSTOP, 0, 200};
    const char *why[] = {"reserved by the C library", "reserved by the C library", "fault", "fault",
                         "fault", "fault", "fault", "cannot be caught", "cannot be caught",
                         "not a signal number", "not a signal number"};
    struct sigaction before, after;
    sigaction(SIGUSR1, NULL, &before);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        det_init_options o;
        test_options(&o, test_tmpdir("badsig"), "badsig");
        int sigs[] = {SIGUSR1, bad[i]}; /* the first one is released again */
        o.preempt_signals = sigs;
        o.preempt_signals_len = 2;
        det_context *ctx = NULL;
        CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, why[i]);
        CHECK(ctx == NULL);
    }
    sigaction(SIGUSR1, NULL, &after);
    CHECK(after.sa_handler == before.sa_handler);
}

/* A handler the program installs after det_core_init survives det_core_close (close used to put
 * back SIG_DFL, so a later SIGTERM killed the process); a program that chains to detcore's handler
 * keeps preemption working. */
static struct sigaction detcore_action;
static void chaining_handler(int sig, siginfo_t *info, void *uctx) {
    user_handler_calls++;
    if (detcore_action.sa_flags & SA_SIGINFO) detcore_action.sa_sigaction(sig, info, uctx);
}

static void keeps_a_handler_installed_after_init(void) {
    struct sigaction old, sa, cur;
    sigaction(SIGTERM, NULL, &old);
    det_init_options o;
    test_options(&o, test_tmpdir("later"), "later");
    det_context *ctx = open_with(&o);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = user_handler;
    sigaction(SIGTERM, &sa, NULL);
    user_handler_calls = 0;
    CHECK_OK(det_core_close(ctx));
    sigaction(SIGTERM, NULL, &cur);
    CHECK(cur.sa_handler == user_handler);
    if (cur.sa_handler == user_handler) { /* else SIGTERM would end the test program */
        raise(SIGTERM);
        CHECK(user_handler_calls == 1);
    }

    /* Chaining: the program saves detcore's action when it installs its own, and calls it. */
    sigaction(SIGTERM, &old, NULL);
    ctx = open_with(&o);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = chaining_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTERM, &sa, &detcore_action);
    CHECK(detcore_action.sa_flags & SA_SIGINFO);
    user_handler_calls = 0;
    bool b = true;
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    raise(SIGTERM);
    CHECK(user_handler_calls == 1);
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(b);
    CHECK_OK(det_core_close(ctx));
    sigaction(SIGTERM, NULL, &cur);
    CHECK(cur.sa_sigaction == chaining_handler);
    sigaction(SIGTERM, &old, NULL);
}

static void halt_file(void) {
    const char *dir = test_tmpdir("halt");
    char f[700];
    snprintf(f, sizeof f, "%s/HALT", dir);
    det_init_options o;
    test_options(&o, dir, "halt");
    o.disable_signal_handlers = true;
    o.halt_file = f;
    det_context *ctx = open_with(&o);
    CHECK(wait_for_preempt(ctx, 0.7) == 0);
    test_write_file(f, "");
    CHECK(wait_for_preempt(ctx, 5) == 1);
    CHECK_OK(det_core_close(ctx));

    /* DET_HALT_FILE works too, and an existing file preempts at once. */
    setenv("DET_HALT_FILE", f, 1);
    test_options(&o, dir, "halt");
    o.disable_signal_handlers = true;
    ctx = open_with(&o);
    CHECK(wait_for_preempt(ctx, 5) == 1);
    CHECK_OK(det_core_close(ctx));
    unsetenv("DET_HALT_FILE");
}

static void end_time(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("end"), "end");
    o.disable_signal_handlers = true;
    o.end_time = now() + 1.5;
    o.halt_margin_seconds = 1.0;
    det_context *ctx = open_with(&o);
    bool known = false;
    double secs = 0;
    CHECK_OK(det_preempt_seconds_remaining(ctx, &known, &secs));
    CHECK(known && secs > 1.0 && secs <= 1.5);
    bool b = true;
    CHECK_OK(det_should_preempt(ctx, &b));
    CHECK(!b);
    CHECK(wait_for_preempt(ctx, 3) == 1);
    CHECK_OK(det_core_close(ctx));

    /* The environment form, with a margin larger than the time left: preempt immediately. */
    char t[64];
    snprintf(t, sizeof t, "%.0f", now() + 60);
    setenv("DET_END_TIME", t, 1);
    setenv("DET_HALT_SECONDS", "300", 1);
    test_options(&o, test_tmpdir("end2"), "end2");
    o.disable_signal_handlers = true;
    ctx = open_with(&o);
    CHECK(wait_for_preempt(ctx, 2) == 1);
    CHECK_OK(det_core_close(ctx));
    setenv("DET_END_TIME", "soon", 1);
    det_context *bad = NULL;
    CHECK_ERR(det_core_init(&o, &bad), DET_ERR_INVALID_ARGUMENT, "DET_END_TIME: \"soon\" is not a number of seconds");
    unsetenv("DET_END_TIME");
    unsetenv("DET_HALT_SECONDS");
}

static void auto_ack_variants(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("ack"), "ack");
    det_context *ctx = open_with(&o);
    bool b = false;
    raise(SIGTERM);
    CHECK_OK(det_should_preempt_ex(ctx, false, &b));
    CHECK(b);
    CHECK_OK(det_preempt_acknowledge(ctx));
    CHECK_OK(det_preempt_acknowledge(ctx)); /* once is enough; again is harmless */
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(sigterm_by_default), TEST(chains_and_restores_previous_handler), TEST(configured_signals_only),
          TEST(refuses_reserved_and_fault_signals), TEST(keeps_a_handler_installed_after_init),
          TEST(halt_file), TEST(end_time), TEST(auto_ack_variants))
