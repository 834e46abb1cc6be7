/* Metrics and other training reports off-cluster: what lands in metrics.jsonl, validation of
 * groups and values, back-pressure without loss, delivery errors, concurrency. */
#include "check.h"

#include <pthread.h>

static det_context *open_in(const char *dir, size_t capacity) {
    det_init_options o;
    test_options(&o, dir, "metrics");
    o.disable_signal_handlers = true;
    o.report_queue_capacity = capacity;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static char *metrics_file(const char *dir) {
    char p[800];
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", dir);
    return test_read_file(p);
}

/* Line `n` (0-based) of `text` without its "report_time" field, in a static buffer. */
static const char *line_without_time(const char *text, int n) {
    static char buf[4096];
    const char *p = text;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p || !*p) return "(no such line)";
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    char *t = strstr(buf, ", \"report_time\": \"");
    if (t) {
        char *q = strchr(t + 18, '"');
        if (q) memmove(t, q + 1, strlen(q + 1) + 1);
    }
    return buf;
}

static void lines_in_metrics_jsonl(void) {
    const char *dir = test_tmpdir("metrics");
    det_context *ctx = open_in(dir, 0);
    CHECK_OK(det_train_report_training_metrics(ctx, 10, "{\"loss\": 0.5, \"lr\": 1e-05}", NULL));
    CHECK_OK(det_train_report_training_metrics(ctx, 20, "{\"loss\": NaN}", "[{\"loss\": 1}, {\"loss\": Infinity}]"));
    CHECK_OK(det_train_report_validation_metrics(ctx, 20, "{\"accuracy\": 0.75, \"name\": \"x\"}"));
    CHECK_OK(det_train_report_metrics(ctx, "inf%er en/ce", 30, "{\"a/b.c%]\\\\ d\": -Infinity}"));
    const char *names[] = {"loss", "acc"};
    double vals[] = {0.25, 1.0 / 0.0};
    CHECK_OK(det_train_report_scalars(ctx, "training", 40, names, vals, 2));
    CHECK_OK(det_train_report_scalars(ctx, "validation", 40, names, vals, 1));
    CHECK_OK(det_train_report_scalars(ctx, "custom", 41, NULL, NULL, 0));
    CHECK_OK(det_train_report_progress(ctx, 0.5));
    CHECK_OK(det_train_set_status(ctx, "warming up"));
    CHECK_OK(det_train_report_early_exit(ctx, DET_EARLY_EXIT_INVALID_HP));
    CHECK_OK(det_train_flush(ctx, 10));
    char *text = metrics_file(dir);
    CHECK(text != NULL);
    if (!text) return;
    /* The run's first line says which process wrote what follows (the pid and host vary). */
    char run_start[256];
    snprintf(run_start, sizeof run_start, "{\"type\": \"run_start\", \"run_name\": \"metrics\", \"pid\": %d, \"host\": \"",
             (int)getpid());
    CHECK(strncmp(line_without_time(text, 0), run_start, strlen(run_start)) == 0);
    CHECK_CONTAINS(line_without_time(text, 0), "\", \"resumes_from\": null}");
    CHECK_STR(line_without_time(text, 1),
              "{\"type\": \"metrics\", \"group\": \"training\", \"steps_completed\": 10, \"metrics\": {\"loss\": 0.5, \"lr\": 1e-05}}");
    CHECK_STR(line_without_time(text, 2),
              "{\"type\": \"metrics\", \"group\": \"training\", \"steps_completed\": 20, \"metrics\": {\"loss\": \"NaN\"}, "
              "\"batch_metrics\": [{\"loss\": 1}, {\"loss\": \"Infinity\"}]}");
    CHECK_STR(line_without_time(text, 3),
              "{\"type\": \"metrics\", \"group\": \"validation\", \"steps_completed\": 20, \"metrics\": {\"accuracy\": 0.75, \"name\": \"x\"}}");
    CHECK_STR(line_without_time(text, 4),
              "{\"type\": \"metrics\", \"group\": \"inf%er en/ce\", \"steps_completed\": 30, \"metrics\": {\"a/b.c%]\\\\ d\": \"-Infinity\"}}");
    CHECK_STR(line_without_time(text, 5),
              "{\"type\": \"metrics\", \"group\": \"training\", \"steps_completed\": 40, \"metrics\": {\"loss\": 0.25, \"acc\": \"Infinity\"}}");
    CHECK_STR(line_without_time(text, 6),
              "{\"type\": \"metrics\", \"group\": \"validation\", \"steps_completed\": 40, \"metrics\": {\"loss\": 0.25}}");
    CHECK_STR(line_without_time(text, 7),
              "{\"type\": \"metrics\", \"group\": \"custom\", \"steps_completed\": 41, \"metrics\": {}}");
    CHECK_STR(line_without_time(text, 8), "{\"type\": \"progress\", \"progress\": 0.5}");
    CHECK_STR(line_without_time(text, 9), "{\"type\": \"status\", \"status\": \"warming up\"}");
    CHECK_STR(line_without_time(text, 10), "{\"type\": \"early_exit\", \"reason\": \"EXITED_REASON_INVALID_HP\"}");
    CHECK_CONTAINS(text, "\"report_time\": \"20");
    free(text);
    CHECK_OK(det_core_close(ctx));
}

static void bad_reports(void) {
    const char *dir = test_tmpdir("badmetrics");
    det_context *ctx = open_in(dir, 0);
    CHECK_ERR(det_train_report_metrics(ctx, "a.b", 1, "{}"), DET_ERR_INVALID_ARGUMENT,
              "\"a.b\" contains '.', which the master refuses");
    CHECK_ERR(det_train_report_metrics(ctx, "", 1, "{}"), DET_ERR_INVALID_ARGUMENT, "must not be empty");
    const char *n[] = {"x"};
    double v[] = {1};
    CHECK_ERR(det_train_report_scalars(ctx, "bad.group", 1, n, v, 1), DET_ERR_INVALID_ARGUMENT, "contains '.'");
    CHECK_ERR(det_train_report_validation_metrics(ctx, 1, "{\"loss\": null}"), DET_ERR_INVALID_ARGUMENT,
              "Validation metric 'loss' returned an invalid scalar value: None");
    CHECK_ERR(det_train_report_training_metrics(ctx, -5, "{}", NULL), DET_ERR_INVALID_ARGUMENT,
              "steps_completed: -5 is negative");
    CHECK_ERR(det_train_report_training_metrics(ctx, 3000000000LL, "{}", NULL), DET_ERR_INVALID_ARGUMENT,
              "exceeds the master's limit of 2147483647");
    CHECK_ERR(det_train_report_progress(ctx, 1.5), DET_ERR_INVALID_ARGUMENT, "progress: 1.5 must be between 0 and 1");
    CHECK_ERR(det_train_report_progress(ctx, 0.0 / 0.0), DET_ERR_INVALID_ARGUMENT, "must be between 0 and 1");
    CHECK_ERR(det_train_flush(ctx, 0), DET_ERR_INVALID_ARGUMENT, "timeout_seconds");
    CHECK_OK(det_train_flush(ctx, 5));
    CHECK_OK(det_train_flush(ctx, 1e300)); /* "as long as it takes" must not overflow */
    char *text = metrics_file(dir);
    CHECK(text != NULL && strstr(text, "\"run_start\"") && strchr(text, '\n') == text + strlen(text) - 1);
    free(text); /* nothing invalid was written: the run_start line only */
    CHECK_OK(det_core_close(ctx));
}

static void run_metadata_and_best_validation(void) {
    const char *dir = test_tmpdir("runmeta");
    det_context *ctx = open_in(dir, 0);
    char *out = NULL;
    CHECK_OK(det_train_get_run_metadata(ctx, &out));
    CHECK_STR(out, "{}");
    det_string_free(out);
    CHECK_OK(det_train_set_run_metadata(ctx, "{\"a\": {\"b\": 1}, \"c\": 2}", &out));
    CHECK_STR(out, "{\"a\": {\"b\": 1}, \"c\": 2}");
    det_string_free(out);
    CHECK_OK(det_train_set_run_metadata(ctx, "{\"a\": {\"d\": 3}}", NULL));
    CHECK_OK(det_train_get_run_metadata(ctx, &out));
    CHECK_STR(out, "{\"a\": {\"b\": 1, \"d\": 3}, \"c\": 2}");
    det_string_free(out);
    bool found = true;
    double best = 1;
    CHECK_OK(det_train_get_experiment_best_validation(ctx, &found, &best));
    CHECK(!found && best == 0);
    CHECK_OK(det_core_close(ctx));
}

/* With a queue of 2 and 3000 reports, callers wait instead of dropping: every line arrives, in order. */
static void backpressure_never_drops(void) {
    const char *dir = test_tmpdir("bp");
    det_context *ctx = open_in(dir, 2);
    const char *n[] = {"i"};
    for (int i = 0; i < 3000; i++) {
        double v = i;
        CHECK_OK(det_train_report_scalars(ctx, "training", i, n, &v, 1));
    }
    CHECK_OK(det_core_close(ctx));
    char *text = metrics_file(dir);
    int lines = 0, in_order = 1;
    const char *first = text ? strchr(text, '\n') : NULL; /* after the run_start line */
    for (const char *p = first ? first + 1 : NULL; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        char want[64];
        snprintf(want, sizeof want, "\"steps_completed\": %d,", lines);
        if (!strstr(p, want) || (strchr(p, '\n') && strstr(p, want) > strchr(p, '\n'))) in_order = 0;
        lines++;
    }
    CHECK(lines == 3000);
    CHECK(in_order);
    free(text);
}

/* metrics.jsonl on a full disk: the failure reaches the caller (flush, next report, close). */
static void write_failure_surfaces(void) {
    const char *dir = test_tmpdir("devfull");
    char run[700], link[800];
    snprintf(run, sizeof run, "%s/run", dir);
    mkdir(run, 0755);
    snprintf(link, sizeof link, "%s/metrics.jsonl", run);
    if (symlink("/dev/full", link) != 0) {
        FAILF("symlink: %s", strerror(errno));
        return;
    }
    det_context *ctx = open_in(dir, 0);
    CHECK_OK(det_train_report_training_metrics(ctx, 1, "{\"x\": 1}", NULL));
    CHECK_ERR(det_train_flush(ctx, 10), DET_ERR_IO, "metrics.jsonl");
    CHECK_OK(det_train_report_training_metrics(ctx, 2, "{\"x\": 2}", NULL));
    det_status st = det_core_close(ctx);
    CHECK(st == DET_ERR_IO);
    CHECK_CONTAINS(det_last_error_message(), "No space left on device");
}

typedef struct {
    det_context *ctx;
    int id;
    int failures;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    char group[32];
    snprintf(group, sizeof group, "thread%d", a->id);
    const char *n[] = {"v"};
    for (int i = 0; i < 500; i++) {
        double v = i;
        bool stop;
        if (det_train_report_scalars(a->ctx, group, i, n, &v, 1) != DET_OK) a->failures++;
        if (det_should_preempt(a->ctx, &stop) != DET_OK || stop) a->failures++;
    }
    return NULL;
}

static void concurrent_reports(void) {
    const char *dir = test_tmpdir("threads");
    det_context *ctx = open_in(dir, 64);
    pthread_t t[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){ctx, i, 0};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(args[i].failures == 0);
    }
    CHECK_OK(det_core_close(ctx));
    char *text = metrics_file(dir);
    int lines = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) lines++;
    CHECK(lines == 1 + 2000); /* the run_start line, then every report */
    /* Per thread, reports stay in order. */
    for (int i = 0; i < 4; i++) {
        char g[64];
        snprintf(g, sizeof g, "\"group\": \"thread%d\"", i);
        int last = -1, ordered = 1;
        for (const char *p = text; p && (p = strstr(p, g)); p++) {
            int s = atoi(strstr(p, "\"steps_completed\": ") + 19);
            if (s != last + 1) ordered = 0;
            last = s;
        }
        CHECK(ordered && last == 499);
    }
    free(text);
}

TEST_MAIN(TEST(lines_in_metrics_jsonl), TEST(bad_reports), TEST(run_metadata_and_best_validation),
          TEST(backpressure_never_drops), TEST(write_failure_surfaces), TEST(concurrent_reports))
