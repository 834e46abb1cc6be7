/* Per-call costs of the hot path, measured in-process:
 *   bench_core should_preempt N   -> ns per det_should_preempt
 *   bench_core report N           -> ns per two-scalar det_train_report_scalars
 *   bench_core report_json N      -> ns per det_train_report_training_metrics (JSON)
 *   bench_core init_close         -> one det_core_init + det_core_close (timed by the caller)
 * Prints one number (nanoseconds per call) for the loops. */
#define _POSIX_C_SOURCE 200809L
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static det_context *open_ctx(size_t capacity) {
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.report_queue_capacity = capacity;
    det_context *ctx;
    if (det_core_init(&o, &ctx) != DET_OK) {
        fprintf(stderr, "init: %s\n", det_last_error_message());
        exit(2);
    }
    return ctx;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    if (strcmp(argv[1], "init_close") == 0) {
        det_context *ctx = open_ctx(0);
        return det_core_close(ctx) == DET_OK ? 0 : 1;
    }
    /* Report modes: a queue that holds every report, so that no call waits for the writer. */
    det_context *ctx = open_ctx(strncmp(argv[1], "report", 6) == 0 ? (size_t)n + 16 : 0);
    double t0, t1;
    if (strcmp(argv[1], "should_preempt") == 0) {
        bool b = false;
        long hits = 0;
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            det_should_preempt(ctx, &b);
            hits += b;
        }
        t1 = now_ns();
        if (hits) fprintf(stderr, "unexpected preemption\n");
    } else if (strcmp(argv[1], "report") == 0) {
        static const char *names[] = {"loss", "accuracy"};
        double v[2] = {0.5, 0.9};
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            v[0] = (double)i;
            det_train_report_scalars(ctx, "training", i, names, v, 2);
        }
        t1 = now_ns();
    } else if (strcmp(argv[1], "report_json") == 0) {
        char buf[128];
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "{\"loss\": %ld.5, \"accuracy\": 0.9}", i);
            det_train_report_training_metrics(ctx, i, buf, NULL);
        }
        t1 = now_ns();
    } else {
        return 2;
    }
    printf("%.2f\n", (t1 - t0) / (double)n);
    return det_core_close(ctx) == DET_OK ? 0 : 1;
}
