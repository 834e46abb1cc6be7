/* The conformance scenario through detcore's C ABI; the same steps as
 * tests/python/scenarios/py_scenario.py (the real Python client). Driven by
 * tests/python/test_oncluster_conformance.py, which starts the fake master and points
 * DET_CLUSTER_INFO_DIR at its info files. Exit code 0 on success; messages on stderr. */
#include <detcore.h>

#include "threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OK(call)                                                                                  \
    do {                                                                                          \
        det_status s_ = (call);                                                                   \
        if (s_ != DET_OK) {                                                                       \
            fprintf(stderr, "scenario: %s failed: %s: %s\n", #call, det_status_name(s_),          \
                    det_last_error_message());                                                    \
            exit(2);                                                                              \
        }                                                                                         \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "scenario: cannot write %s\n", p);
        exit(2);
    }
}

int main(void) {
    det_init_options o;
    OK(det_init_options_default(&o, sizeof o));
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    det_context *ctx = NULL;
    int threads_before = test_thread_count();
    OK(det_core_init(&o, &ctx));

    bool on = false;
    OK(det_info_is_on_cluster(ctx, &on));
    if (!on) {
        fprintf(stderr, "scenario: not on-cluster\n");
        return 2;
    }

    OK(det_train_report_training_metrics(
        ctx, 10,
        "{\"loss\": 0.5, \"nan\": NaN, \"inf\": Infinity, \"ninf\": -Infinity, "
        /* C's printf spellings of the same values (the Python scenario sends math.nan, ...) */
        "\"cnan\": -nan, \"cinf\": inf, \"cninf\": -INF, "
        "\"nested\": {\"a\": 1, \"b\": [1, 2.5]}, \"str\": \"x\"}",
        "[{\"loss\": 0.7}, {\"loss\": 0.6}]"));
    OK(det_train_report_validation_metrics(ctx, 10, "{\"val_loss\": 0.25, \"batches\": 10}"));
    OK(det_train_report_metrics(ctx, "inf%er en/ce", 10, "{\"x\": 1}"));
    const char *names[] = {"loss", "acc"};
    const double values[] = {0.4, 0.75};
    OK(det_train_report_scalars(ctx, "training", 20, names, values, 2));
    OK(det_train_report_progress(ctx, 0.5));
    OK(det_train_set_status(ctx, "training"));

    det_ckpt_store *store = NULL;
    OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 20}", false, &store));
    const char *path = NULL;
    OK(det_ckpt_store_path(store, &path));
    unsigned char model[100];
    memset(model, 1, sizeof model);
    write_file(path, "model.bin", model, sizeof model);
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/sub", path);
    mkdir(sub, 0777);
    write_file(sub, "opt.txt", "momentum", 8);
    char sid[DET_STORAGE_ID_LEN];
    OK(det_ckpt_store_path_end(store, sid));

    char *md = NULL;
    OK(det_ckpt_get_metadata(ctx, sid, &md));
    if (strcmp(md, "{\"steps_completed\": 20}") != 0) {
        fprintf(stderr, "scenario: metadata %s\n", md);
        return 2;
    }
    det_string_free(md);

    det_searcher_op *op = NULL;
    OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    int64_t len = 0;
    OK(det_searcher_op_length(op, &len));
    if (len != 100) {
        fprintf(stderr, "scenario: op length %lld\n", (long long)len);
        return 2;
    }
    OK(det_searcher_op_report_progress(op, 50));
    OK(det_searcher_op_report_completed(op, 0.25));
    det_searcher_op *none = NULL;
    OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &none));
    OK(det_searcher_op_free(op));
    if (none != NULL) {
        fprintf(stderr, "scenario: a second searcher op\n");
        return 2;
    }
    int32_t unit = 0;
    OK(det_searcher_get_configured_units(ctx, &unit));
    if (unit != DET_UNIT_BATCHES) {
        fprintf(stderr, "scenario: unit %d\n", unit);
        return 2;
    }

    bool found = false;
    double best = 0;
    OK(det_train_get_experiment_best_validation(ctx, &found, &best));
    printf("best %s %g\n", found ? "found" : "none", best);

    char *rmd = NULL;
    OK(det_train_set_run_metadata(ctx, "{\"note\": \"hello\", \"n\": 1}", &rmd));
    det_string_free(rmd);
    OK(det_train_get_run_metadata(ctx, &rmd));
    if (strcmp(rmd, "{\"note\": \"hello\", \"n\": 1}") != 0) {
        fprintf(stderr, "scenario: run metadata %s\n", rmd);
        return 2;
    }
    det_string_free(rmd);

    OK(det_core_alert(ctx, "end of main", "scenario", DET_ALERT_LEVEL_WARN));
    OK(det_experimental_report_task_using_checkpoint(ctx, sid));
    OK(det_experimental_report_task_using_model_version(ctx, sid, 4, 2));
    OK(det_ckpt_delete(ctx, sid));

    /* The fake master preempts once it has answered the PATCH of the delete. */
    double t0 = now();
    bool pre = false;
    for (;;) {
        OK(det_should_preempt(ctx, &pre));
        if (pre) break;
        if (now() - t0 > 20) {
            fprintf(stderr, "scenario: no preemption\n");
            return 3;
        }
        usleep(50000);
    }
    OK(det_core_close(ctx));
    /* The master's threads (reporter, preemption poll, acknowledgement) are joined by close. */
    if (test_thread_count() != threads_before) {
        fprintf(stderr, "scenario: %d threads before det_core_init, %d after det_core_close\n", threads_before,
                test_thread_count());
        return 5;
    }
    printf("done\n");
    return 0;
}
