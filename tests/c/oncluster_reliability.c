/* Reliability run against a misbehaving fake master (driven by
 * tests/python/test_oncluster_reliability.py): reports `DETCORE_TEST_REPORTS` training metrics
 * (two scalars, step i), one every `DETCORE_TEST_INTERVAL_MS`, stores one checkpoint after
 * `DETCORE_TEST_CKPT_AT` reports, then closes. Prints one JSON line:
 *   {"reports": n, "errors": e, "max_call_us": m, "checkpoint": "<id>", "close": "<status>"}
 * The training loop's cost is measured around each report call. */
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static long env_long(const char *k, long d) {
    const char *v = getenv(k);
    return v && *v ? atol(v) : d;
}

int main(void) {
    long n = env_long("DETCORE_TEST_REPORTS", 200);
    long interval_ms = env_long("DETCORE_TEST_INTERVAL_MS", 10);
    long ckpt_at = env_long("DETCORE_TEST_CKPT_AT", n / 2);
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.close_timeout_seconds = (double)env_long("DETCORE_TEST_CLOSE_SECONDS", 120);
    det_context *ctx = NULL;
    if (det_core_init(&o, &ctx) != DET_OK) {
        fprintf(stderr, "init: %s\n", det_last_error_message());
        return 2;
    }
    const char *names[] = {"loss", "step"};
    double max_call = 0;
    long errors = 0;
    char sid[DET_STORAGE_ID_LEN] = "";
    for (long i = 0; i < n; i++) {
        double values[2] = {1.0 / (double)(i + 1), (double)i};
        double t = now();
        det_status s = det_train_report_scalars(ctx, "training", i, names, values, 2);
        double dt = now() - t;
        if (dt > max_call) max_call = dt;
        if (s != DET_OK) {
            errors++;
            fprintf(stderr, "report %ld: %s: %s\n", i, det_status_name(s), det_last_error_message());
        }
        if (i == ckpt_at) {
            det_ckpt_store *st = NULL;
            char meta[64];
            snprintf(meta, sizeof meta, "{\"steps_completed\": %ld}", i);
            if (det_ckpt_store_path_begin(ctx, meta, false, &st) != DET_OK) {
                fprintf(stderr, "store_path_begin: %s\n", det_last_error_message());
                return 2;
            }
            const char *p = NULL;
            det_ckpt_store_path(st, &p);
            char f[4096];
            snprintf(f, sizeof f, "%s/state.bin", p);
            FILE *fp = fopen(f, "wb");
            fputs("state", fp);
            fclose(fp);
            if (det_ckpt_store_path_end(st, sid) != DET_OK) {
                fprintf(stderr, "store_path_end: %s\n", det_last_error_message());
                return 2;
            }
        }
        if (interval_ms > 0) usleep((useconds_t)(interval_ms * 1000));
    }
    det_status cs = det_core_close(ctx);
    if (cs != DET_OK) fprintf(stderr, "close: %s\n", det_last_error_message());
    printf("{\"reports\": %ld, \"errors\": %ld, \"max_call_us\": %.1f, \"checkpoint\": \"%s\", "
           "\"close\": \"%s\"}\n",
           n, errors, max_call * 1e6, sid, det_status_name(cs));
    return 0;
}
