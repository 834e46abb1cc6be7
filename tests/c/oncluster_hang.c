/* A master that hangs (driven by tests/python/test_oncluster_reliability.py): init while the
 * master answers, print "ready", wait for a line on stdin (the test then makes the master hang),
 * and time each call. Prints one JSON line with each call's status and seconds:
 *   {"metadata": [status, s], "best": [...], "checkpoint": [...], "report": [...], "close": [...]}
 * and the last error of the close on stderr. */
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.close_timeout_seconds = 3;
    det_context *ctx = NULL;
    if (det_core_init(&o, &ctx) != DET_OK) {
        fprintf(stderr, "init: %s\n", det_last_error_message());
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 2;

    double t = now();
    char *out = NULL;
    det_status s_md = det_train_set_run_metadata(ctx, "{\"a\": 1}", &out);
    double d_md = now() - t;
    fprintf(stderr, "metadata: %s\n", det_last_error_message());

    t = now();
    bool found;
    double best;
    det_status s_best = det_train_get_experiment_best_validation(ctx, &found, &best);
    double d_best = now() - t;

    t = now();
    det_ckpt_store *st = NULL;
    char sid[DET_STORAGE_ID_LEN];
    det_status s_ck = det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &st);
    if (s_ck == DET_OK) s_ck = det_ckpt_store_path_end(st, sid);
    double d_ck = now() - t;
    fprintf(stderr, "checkpoint: %s\n", det_last_error_message());

    const char *names[] = {"loss"};
    double v[] = {0.5};
    t = now();
    det_status s_rep = DET_OK;
    for (int i = 0; i < 5 && s_rep == DET_OK; i++) s_rep = det_train_report_scalars(ctx, "training", i, names, v, 1);
    double d_rep = now() - t;

    t = now();
    det_status s_close = det_core_close(ctx);
    double d_close = now() - t;
    fprintf(stderr, "close: %s\n", det_last_error_message());
    printf("{\"metadata\": [\"%s\", %.3f], \"best\": [\"%s\", %.3f], \"checkpoint\": [\"%s\", %.3f], "
           "\"report\": [\"%s\", %.6f], \"close\": [\"%s\", %.3f]}\n",
           det_status_name(s_md), d_md, det_status_name(s_best), d_best, det_status_name(s_ck), d_ck,
           det_status_name(s_rep), d_rep, det_status_name(s_close), d_close);
    return 0;
}
