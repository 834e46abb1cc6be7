/* One rank of the restore benchmark (driven by bench/restore_bench.py):
 *   restore_worker <storage> <storage id> shared|noshared
 * Ranks come from the launcher environment (det_distributed_from_env). After a barrier, each rank
 * times det_ckpt_restore_path_begin (LocalWorkersShareDownload or NoSharedDownload) and prints
 * the seconds; the scope is then ended (untimed). */
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
    if (argc < 4) return 2;
    det_distributed_config d;
    CHECK(det_distributed_config_default(&d, sizeof d));
    CHECK(det_distributed_from_env(DET_LAUNCHER_AUTO, &d));
    det_init_options o;
    CHECK(det_init_options_default(&o, sizeof o));
    o.distributed = &d;
    o.disable_signal_handlers = true;
    o.cluster_info_dir = "/nonexistent";
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.checkpoint_storage = argv[1];
    char run[256];
    snprintf(run, sizeof run, "%s/rank%d", getenv("BENCH_WORK"), d.rank);
    o.run_dir = run;
    o.run_name = "bench-restore";
    det_context *ctx;
    CHECK(det_core_init(&o, &ctx));
    int32_t mode = strcmp(argv[3], "shared") == 0 ? DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD
                                                  : DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD;
    CHECK(det_dist_barrier(ctx));
    double t0 = now();
    det_ckpt_restore *r;
    CHECK(det_ckpt_restore_path_begin(ctx, argv[2], mode, NULL, NULL, &r));
    double t1 = now();
    CHECK(det_ckpt_restore_path_end(r));
    printf("%.6f\n", t1 - t0);
    CHECK(det_core_close(ctx));
    return 0;
}
