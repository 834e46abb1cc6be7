/* One rank of the distributed benchmarks (driven by bench/dist_bench.py):
 *   bench_dist allgather N      -> mean microseconds per 64-byte allgather (after a warm-up)
 *   bench_dist should_preempt N -> mean nanoseconds per det_should_preempt (WorkersAskChief)
 * Ranks come from the launcher environment (det_distributed_from_env). */
#define _DEFAULT_SOURCE
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        det_status s_ = (c);                                                                       \
        if (s_) {                                                                                  \
            fprintf(stderr, "%s: %s\n", #c, det_last_error_message());                             \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    det_distributed_config d;
    CHECK(det_distributed_config_default(&d, sizeof d));
    CHECK(det_distributed_from_env(DET_LAUNCHER_AUTO, &d));
    det_init_options o;
    CHECK(det_init_options_default(&o, sizeof o));
    o.distributed = &d;
    o.disable_signal_handlers = true;
    o.cluster_info_dir = "/nonexistent";
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    char run[256];
    snprintf(run, sizeof run, "%s/rank%d", getenv("BENCH_WORK"), d.rank);
    o.run_dir = run;
    o.run_name = "bench";
    det_context *ctx;
    CHECK(det_core_init(&o, &ctx));
    double t0 = 0, t1 = 0;
    if (!strcmp(argv[1], "allgather")) {
        char payload[64];
        memset(payload, d.rank, sizeof payload);
        for (long i = 0; i < n + n / 10; i++) {
            if (i == n / 10) t0 = now();
            det_bytes_list *l;
            CHECK(det_dist_allgather(ctx, payload, sizeof payload, &l));
            det_bytes_list_free(l);
        }
        t1 = now();
        printf("%.3f\n", (t1 - t0) / n * 1e6);
    } else {
        bool b;
        for (long i = 0; i < n / 10; i++) CHECK(det_should_preempt(ctx, &b));
        t0 = now();
        for (long i = 0; i < n; i++) CHECK(det_should_preempt(ctx, &b));
        t1 = now();
        printf("%.3f\n", (t1 - t0) / n * 1e9);
    }
    CHECK(det_core_close(ctx));
    return 0;
}
