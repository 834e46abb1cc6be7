/* det_profiler_*: start and stop the system-metrics sampler through the C ABI, its reports in
 * metrics.jsonl, Python's checks of the arguments, idempotence, NULL and a closed context. */
#include "check.h"

#include <time.h>

static det_context *open_ctx(const char *dir) {
    det_init_options o;
    test_options(&o, dir, "prof");
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

/* The number of profiler reports (metrics records without a step) of `group` in metrics.jsonl. */
static int profiler_reports(const char *dir, const char *group) {
    char p[800], needle[200];
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", dir);
    char *text = test_read_file(p);
    if (!text) return 0;
    snprintf(needle, sizeof needle, "\"group\": \"%s\"", group);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strstr(line, "\"type\": \"metrics\"") && strstr(line, "\"steps_completed\": null") &&
            strstr(line, needle))
            n++;
    }
    free(text);
    return n;
}

static void start_and_stop_reports(void) {
    const char *dir = test_tmpdir("profiler");
    det_context *ctx = open_ctx(dir);
    CHECK_OK(det_profiler_on(ctx, 0.1, 2));
    /* Idempotent: a second start, whatever its arguments (not checked, as in Python), does
     * nothing. */
    CHECK_OK(det_profiler_on(ctx, -5.0, 0));
    struct timespec t = {0, 350 * 1000 * 1000}, poll = {0, 50 * 1000 * 1000};
    /* Wait (at most 30 s, however loaded the machine) for the first full period's report. */
    for (int i = 0; i < 600 && profiler_reports(dir, "cpu") < 1; i++) {
        CHECK_OK(det_train_flush(ctx, 10));
        nanosleep(&poll, NULL);
    }
    CHECK(profiler_reports(dir, "cpu") >= 1);
    /* off takes a last sample, reports the unfinished period and joins the thread. */
    CHECK_OK(det_profiler_off(ctx));
    CHECK_OK(det_profiler_off(ctx)); /* idempotent */
    CHECK_OK(det_train_flush(ctx, 10));
    int cpu = profiler_reports(dir, "cpu");
    CHECK(cpu >= 2);
    CHECK(profiler_reports(dir, "memory") >= 1);
    /* Nothing is sampled once off: the count stays. */
    nanosleep(&t, NULL);
    CHECK_OK(det_train_flush(ctx, 10));
    CHECK(profiler_reports(dir, "cpu") == cpu);
    /* It can be started again after off. */
    CHECK_OK(det_profiler_on(ctx, 0.1, 1));
    nanosleep(&t, NULL);
    CHECK_OK(det_core_close(ctx)); /* close stops it too */
    CHECK(profiler_reports(dir, "cpu") > cpu);
}

static void bad_arguments(void) {
    const char *dir = test_tmpdir("profiler-bad");
    det_context *ctx = open_ctx(dir);
    CHECK_ERR(det_profiler_on(ctx, 0.05, 10), DET_ERR_INVALID_ARGUMENT,
              "det_profiler_on: Sampling interval must be > 0.1, got 0.05.");
    CHECK_ERR(det_profiler_on(ctx, 0.0 / 0.0, 10), DET_ERR_INVALID_ARGUMENT, "got nan.");
    CHECK_ERR(det_profiler_on(ctx, 1.0 / 0.0, 10), DET_ERR_INVALID_ARGUMENT, "got inf.");
    CHECK_ERR(det_profiler_on(ctx, 1.0, 0), DET_ERR_INVALID_ARGUMENT,
              "It must be an int > 1, but was specified as 0.");
    CHECK_ERR(det_profiler_on(ctx, 1.0, -3), DET_ERR_INVALID_ARGUMENT, "specified as -3.");
    /* A refused start leaves the profiler off: off does nothing, nothing was reported. */
    CHECK_OK(det_profiler_off(ctx));
    CHECK_OK(det_train_flush(ctx, 10));
    CHECK(profiler_reports(dir, "cpu") == 0);
    CHECK_OK(det_core_close(ctx));
}

static void null_and_closed_context(void) {
    CHECK_ERR(det_profiler_on(NULL, 1.0, 10), DET_ERR_INVALID_ARGUMENT, "det_profiler_on: ctx is NULL");
    CHECK_ERR(det_profiler_off(NULL), DET_ERR_INVALID_ARGUMENT, "det_profiler_off: ctx is NULL");
    det_context *ctx = open_ctx(test_tmpdir("profiler-closed"));
    CHECK_OK(det_profiler_on(ctx, 0.1, 1));
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_profiler_on(ctx, 1.0, 10), DET_ERR_STATE, "closed by det_core_close");
    CHECK_ERR(det_profiler_off(ctx), DET_ERR_STATE, "closed by det_core_close");
}

/* A long period: only the final report at close can carry the samples; profiler reports go to
 * TensorBoard too off-cluster. */
static void final_report_at_close(void) {
    const char *dir = test_tmpdir("prof");
    det_init_options o;
    test_options(&o, dir, "prof");
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_ERR(det_profiler_on(ctx, 0.05, 10), DET_ERR_INVALID_ARGUMENT, "Sampling interval must be > 0.1, got 0.05.");
    CHECK_ERR(det_profiler_on(ctx, 1, 0), DET_ERR_INVALID_ARGUMENT,
              "It must be an int > 1, but was specified as 0.");
    CHECK_ERR(det_profiler_on(ctx, 0.0 / 0.0, 10), DET_ERR_INVALID_ARGUMENT, "got nan");
    CHECK_OK(det_profiler_off(ctx)); /* off while off */
    /* A long period: only the final report at close can carry these samples. */
    CHECK_OK(det_profiler_on(ctx, 0.1, 1000));
    CHECK_OK(det_profiler_on(ctx, 0.0, -5)); /* idempotent, arguments not checked while on */
    usleep(350 * 1000);
    CHECK_OK(det_core_close(ctx));
    char path[2048];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    char *m = test_read_file(path);
    CHECK(m != NULL);
    if (m) {
        CHECK_CONTAINS(m, "\"group\": \"cpu\"");
        CHECK_CONTAINS(m, "\"group\": \"memory\"");
        CHECK_CONTAINS(m, "\"group\": \"disk\"");
        CHECK_CONTAINS(m, "\"group\": \"network\"");
        CHECK_CONTAINS(m, "\"cpu_util_simple\": ");
        CHECK_CONTAINS(m, "\"disk_util\": ");
    }
    free(m);
    /* ... and TensorBoard, off-cluster. */
    snprintf(path, sizeof path, "%s/run/tensorboard", dir);
    CHECK(test_count_files(path, "tfevents") == 1);
}

TEST_MAIN(TEST(start_and_stop_reports), TEST(bad_arguments), TEST(null_and_closed_context),
          TEST(final_report_at_close))
