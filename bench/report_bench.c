/* Caller-side cost of metric reports on-cluster: BENCH_REPORTS two-scalar training reports
 * through det_train_report_scalars against the master in DET_CLUSTER_INFO_DIR, then
 * det_core_close (which delivers them all). Prints one JSON line:
 *   {"n", "mean_ns", "median_ns", "p99_ns", "max_ns", "loop_s", "close_s", "total_s", "close"}
 * mean_ns is the loop's time divided by n; median/p99/max/first come from clock_gettime around
 * each call (its own cost, about 20 ns, is included in all of them). */
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    const char *e = getenv("BENCH_REPORTS");
    long n = e && *e ? atol(e) : 10000;
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.disable_signal_handlers = true;
    o.close_timeout_seconds = 600;
    det_context *ctx = NULL;
    if (det_core_init(&o, &ctx) != DET_OK) {
        fprintf(stderr, "init: %s\n", det_last_error_message());
        return 2;
    }
    const char *names[] = {"loss", "accuracy"};
    double *per = malloc(sizeof(double) * (size_t)n);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        double v[2] = {1.0 / (double)(i + 1), (double)i / (double)n};
        double a = now();
        det_status s = det_train_report_scalars(ctx, "training", i, names, v, 2);
        per[i] = now() - a;
        if (s != DET_OK) {
            fprintf(stderr, "report %ld: %s\n", i, det_last_error_message());
            return 2;
        }
    }
    double t1 = now();
    det_status cs = det_core_close(ctx);
    double t2 = now();
    if (cs != DET_OK) fprintf(stderr, "close: %s\n", det_last_error_message());
    double first = per[0];
    qsort(per, (size_t)n, sizeof(double), cmp);
    printf("{\"n\": %ld, \"first_ns\": %.1f, \"mean_ns\": %.1f, \"median_ns\": %.1f, \"p99_ns\": %.1f, \"max_ns\": %.1f, "
           "\"loop_s\": %.6f, \"close_s\": %.3f, \"total_s\": %.3f, \"close\": \"%s\"}\n",
           n, first * 1e9, (t1 - t0) / (double)n * 1e9, per[n / 2] * 1e9, per[(size_t)(n * 0.99)] * 1e9,
           per[n - 1] * 1e9, t1 - t0, t2 - t1, t2 - t0, det_status_name(cs));
    free(per);
    return cs == DET_OK ? 0 : 1;
}
