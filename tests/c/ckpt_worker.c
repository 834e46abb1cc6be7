/* An off-cluster training process for the hardening tests (tests/python/test_hardening.py):
 * several of them share one run, they are killed at exact points, their disk fills up.
 *
 * Environment: WORKER_STORAGE (checkpoint_storage), WORKER_RUN (run name), WORKER_RUN_DIR,
 * WORKER_N (checkpoints to store, default 3), WORKER_STEP0 (steps_completed of the first is
 * WORKER_STEP0 + 1, default: resume point), WORKER_BYTES (size of the file in each checkpoint,
 * default 4096), WORKER_REPORTS (metrics reports before each checkpoint, default 2).
 *
 * Prints, one line each, flushed at once (so that a parent that kills it knows what returned):
 *   resumed <storage id or -> <steps>
 *   ok <storage id> <steps>            a checkpoint whose det_ckpt_store_path_end returned DET_OK
 *   fail <status name> <message>       one that failed (the run goes on)
 *   closed <status name> */
#include <detcore.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long env_long(const char *k, long d) {
    const char *v = getenv(k);
    return v && *v ? atol(v) : d;
}

static int write_file(const char *dir, long bytes, long seed) {
    char path[4096];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    char buf[4096];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(seed + (long)i);
    int rc = 0;
    for (long left = bytes; left > 0 && rc == 0;) {
        size_t n = left < (long)sizeof buf ? (size_t)left : sizeof buf;
        if (fwrite(buf, 1, n, f) != n) rc = -1;
        left -= (long)n;
    }
    if (fclose(f) != 0) rc = -1;
    return rc;
}

int main(void) {
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.checkpoint_storage = getenv("WORKER_STORAGE");
    o.run_name = getenv("WORKER_RUN");
    o.run_dir = getenv("WORKER_RUN_DIR");
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    det_status is = det_core_init(&o, &ctx);
    if (is != DET_OK) {
        printf("init %s %s\n", det_status_name(is), det_last_error_message());
        return 2;
    }
    char *latest = NULL;
    int64_t steps = 0;
    det_info_latest_checkpoint(ctx, &latest);
    det_info_steps_completed(ctx, &steps);
    printf("resumed %s %lld\n", latest ? latest : "-", (long long)steps);
    fflush(stdout);
    det_string_free(latest);

    long n = env_long("WORKER_N", 3);
    long step0 = env_long("WORKER_STEP0", steps);
    long bytes = env_long("WORKER_BYTES", 4096);
    long reports = env_long("WORKER_REPORTS", 2);
    const char *names[] = {"loss"};
    for (long i = 1; i <= n; i++) {
        long step = step0 + i;
        for (long r = 0; r < reports; r++) {
            double v = 1.0 / (double)(step + r);
            det_train_report_scalars(ctx, "training", (uint64_t)step, names, &v, 1);
        }
        char meta[64];
        snprintf(meta, sizeof meta, "{\"steps_completed\": %ld}", step);
        det_ckpt_store *st = NULL;
        det_status s = det_ckpt_store_path_begin(ctx, meta, false, &st);
        if (s != DET_OK) {
            printf("fail %s %s\n", det_status_name(s), det_last_error_message());
            fflush(stdout);
            continue;
        }
        const char *dir = NULL;
        det_ckpt_store_path(st, &dir);
        if (write_file(dir, bytes, step) != 0) {
            printf("fail DET_ERR_IO writing the checkpoint's file failed (disk full?)\n");
            fflush(stdout);
            det_ckpt_store_path_abort(st);
            continue;
        }
        char sid[DET_STORAGE_ID_LEN + 1] = {0};
        s = det_ckpt_store_path_end(st, sid);
        if (s == DET_OK)
            printf("ok %s %ld\n", sid, step);
        else
            printf("fail %s %s\n", det_status_name(s), det_last_error_message());
        fflush(stdout);
    }
    det_status cs = det_core_close(ctx);
    printf("closed %s\n", det_status_name(cs));
    return 0;
}
