/* One rank of a multi-process test, driven by tests/python/test_distributed.py, which launches
 * N copies with the environment of a launcher (torchrun, Open MPI, Slurm), and by
 * tests/launchers (the real mpirun, srun and sbatch). Ranks come from
 * det_distributed_from_env(DET_LAUNCHER_AUTO).
 *
 *   dist_worker <scenario> [args...]
 *
 * Prints "RESULT <rank> <text>" lines the driver checks; exits 0 on success, 3 on a detected
 * failure of the scenario, or with the det_status of an expected error (see each scenario).
 *
 * Built a second time as dist_worker_mpi (DIST_WORKER_MPI, where CMake finds MPI): that one also
 * calls MPI_Init before det_core_init and MPI_Finalize after det_core_close, and checks an
 * MPI_Allreduce works beside detcore's collectives. */
#define _DEFAULT_SOURCE
#include <detcore.h>
#ifdef DIST_WORKER_MPI
#include <mpi.h>
#endif

#include "threads.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = -1;

/* One write per message, so that a launcher forwarding several ranks' stderr never interleaves
 * two messages within a line. */
#define DIE(...)                                                                                  \
    do {                                                                                          \
        char die_[4096];                                                                          \
        int die_n_ = snprintf(die_, sizeof die_, "rank %d: ", g_rank);                            \
        snprintf(die_ + die_n_, sizeof die_ - (size_t)die_n_ - 1, __VA_ARGS__);                   \
        strcat(die_, "\n");                                                                       \
        fputs(die_, stderr);                                                                      \
        exit(3);                                                                                  \
    } while (0)

#define CHECK(call)                                                                               \
    do {                                                                                          \
        det_status st_ = (call);                                                                  \
        if (st_ != DET_OK) DIE("%s: %s: %s", #call, det_status_name(st_), det_last_error_message()); \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static det_context *open_ctx(int32_t preempt_mode, bool signals) {
    det_distributed_config d;
    CHECK(det_distributed_config_default(&d, sizeof d));
    CHECK(det_distributed_from_env(DET_LAUNCHER_AUTO, &d));
    const char *t = getenv("DIST_TIMEOUT");
    if (t) d.collective_timeout_seconds = atof(t);
    d.connect_timeout_seconds = 60;
    det_init_options o;
    CHECK(det_init_options_default(&o, sizeof o));
    o.distributed = &d;
    o.preempt_mode = preempt_mode;
    o.disable_signal_handlers = !signals;
    o.cluster_info_dir = "/nonexistent";
    o.checkpoint_storage = getenv("DIST_STORAGE");
    char run_dir[512];
    snprintf(run_dir, sizeof run_dir, "%s/rank%d", getenv("DIST_WORK") ? getenv("DIST_WORK") : "/tmp", d.rank);
    o.run_dir = run_dir;
    o.run_name = getenv("DIST_RUN") ? getenv("DIST_RUN") : "dist";
    det_context *ctx;
    CHECK(det_core_init(&o, &ctx));
    g_rank = d.rank;
    return ctx;
}

static void fill(uint8_t *p, size_t n, int rank, size_t size) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rank * 31 + i * 7 + size);
}

static int check_fill(const uint8_t *p, size_t n, int rank, size_t size) {
    static uint8_t *expect = NULL;
    static size_t cap = 0;
    if (n > cap) {
        free(expect);
        expect = malloc(n);
        cap = n;
    }
    fill(expect, n, rank, size);
    return n == 0 || memcmp(p, expect, n) == 0;
}

static void verify_list(det_bytes_list *l, int n, size_t size, const char *what) {
    size_t len;
    CHECK(det_bytes_list_len(l, &len));
    if ((int)len != n) DIE("%s: %zu items, expected %d", what, len, n);
    for (int r = 0; r < n; r++) {
        const void *data;
        size_t got;
        CHECK(det_bytes_list_get(l, r, &data, &got));
        if (got != size || !check_fill(data, size, r, size)) DIE("%s: item %d wrong (%zu bytes)", what, r, got);
    }
}

static int scenario_collectives(int argc, char **argv) {
    int threads_before = test_thread_count();
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank, size, lrank, lsize;
    CHECK(det_dist_rank(ctx, &rank));
    CHECK(det_dist_size(ctx, &size));
    CHECK(det_dist_local_rank(ctx, &lrank));
    CHECK(det_dist_local_size(ctx, &lsize));
    size_t max = argc > 0 ? (size_t)atoll(argv[0]) : (1 << 20);
    size_t sizes[] = {0, 1, 64, 4096, 1 << 20, 16 << 20, 64 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        if (n > max) break;
        uint8_t *buf = malloc(n ? n : 1);
        fill(buf, n, rank, n);
        det_bytes_list *l;
        CHECK(det_dist_allgather(ctx, buf, n, &l));
        verify_list(l, size, n, "allgather");
        CHECK(det_bytes_list_free(l));
        CHECK(det_dist_gather(ctx, buf, n, &l));
        if (rank == 0) {
            verify_list(l, size, n, "gather");
            CHECK(det_bytes_list_free(l));
        } else if (l != NULL) {
            DIE("gather gave a list to a non-chief");
        }
        CHECK(det_dist_broadcast(ctx, rank == 0 ? buf : NULL, rank == 0 ? n : 0, &l));
        verify_list(l, 1, n, "broadcast");
        CHECK(det_bytes_list_free(l));
        /* Local collectives: items are indexed by local rank; payload pattern uses the global rank. */
        fill(buf, n, lrank, n);
        CHECK(det_dist_allgather_local(ctx, buf, n, &l));
        verify_list(l, lsize, n, "allgather_local");
        CHECK(det_bytes_list_free(l));
        CHECK(det_dist_gather_local(ctx, buf, n, &l));
        if (lrank == 0) {
            verify_list(l, lsize, n, "gather_local");
            CHECK(det_bytes_list_free(l));
        }
        CHECK(det_dist_broadcast_local(ctx, lrank == 0 ? buf : NULL, lrank == 0 ? n : 0, &l));
        verify_list(l, 1, n, "broadcast_local");
        CHECK(det_bytes_list_free(l));
        free(buf);
    }
    CHECK(det_dist_barrier(ctx));
    CHECK(det_core_close(ctx));
    /* Every connection's reader thread is joined by close. */
    if (test_thread_count() != threads_before)
        DIE("%d threads before det_core_init, %d after det_core_close", threads_before, test_thread_count());
    printf("RESULT %d ok\n", rank);
    return 0;
}

/* The chief broadcasts `n` values back to back while the workers are still asleep, then
 * everyone does `n` small allgathers. Nothing is dropped, whatever the distance. */
static int scenario_race(int argc, char **argv) {
    int n = argc > 0 ? atoi(argv[0]) : 10000;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank, size;
    CHECK(det_dist_rank(ctx, &rank));
    CHECK(det_dist_size(ctx, &size));
    if (rank != 0) usleep(500000);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)i * 2654435761u;
        det_bytes_list *l;
        CHECK(det_dist_broadcast(ctx, &v, sizeof v, &l));
        const void *d;
        size_t len;
        CHECK(det_bytes_list_get(l, 0, &d, &len));
        if (len != 4 || *(const uint32_t *)d != (uint32_t)i * 2654435761u) DIE("broadcast %d arrived wrong", i);
        CHECK(det_bytes_list_free(l));
    }
    double t1 = now();
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)(i * 1000 + rank);
        det_bytes_list *l;
        CHECK(det_dist_allgather(ctx, &v, sizeof v, &l));
        for (int r = 0; r < size; r++) {
            const void *d;
            size_t len;
            CHECK(det_bytes_list_get(l, r, &d, &len));
            if (*(const uint32_t *)d != (uint32_t)(i * 1000 + r)) DIE("allgather %d item %d wrong", i, r);
        }
        CHECK(det_bytes_list_free(l));
    }
    double t2 = now();
    printf("RESULT %d ok broadcasts=%.3fs allgathers=%.3fs\n", rank, t1 - t0, t2 - t1);
    CHECK(det_core_close(ctx));
    return 0;
}

/* WorkersAskChief: loop on det_should_preempt with random per-rank delays until it says true;
 * print the call index. The driver signals the processes (all of them, or only the chief). */
static int scenario_preempt(int argc, char **argv) {
    (void)argc;
    (void)argv;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, true);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    printf("READY %d\n", rank);
    fflush(stdout);
    unsigned seed = (unsigned)(rank * 7919 + (int)getpid());
    long k = 0;
    bool stop = false;
    double deadline = now() + 120;
    while (!stop) {
        k++;
        int r = rand_r(&seed) % 100;
        if (r < 20) usleep((useconds_t)(rand_r(&seed) % 300));
        CHECK(det_should_preempt(ctx, &stop));
        if (now() > deadline) DIE("no preemption after 120 s (%ld calls)", k);
    }
    printf("RESULT %d stopped_at=%ld\n", rank, k);
    CHECK(det_core_close(ctx));
    return 0;
}

/* The program's own SIGUSR1 handler, installed before det_core_init: detcore records the signal
 * and then chains to it, so once `g_usr1` is set detcore's flag is set too. */
static atomic_int g_usr1;
static void on_usr1(int sig) {
    (void)sig;
    atomic_store(&g_usr1, 1);
}

/* WorkersAskChief preemption lag: every rank calls det_should_preempt every `period_us`
 * microseconds until it says true; the driver sends SIGUSR1 to the chief only. The chief prints
 * `seen_at`, its first call made after the signal had arrived (detcore saw it at that call or
 * before); every rank prints the call at which it got true and the CLOCK_MONOTONIC time of it. */
static int scenario_lag(int argc, char **argv) {
    if (argc < 1) DIE("lag: period_us missing");
    useconds_t period = (useconds_t)atol(argv[0]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) DIE("sigaction failed");
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, true);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    printf("READY %d\n", rank);
    fflush(stdout);
    long k = 0, seen_at = 0;
    bool stop = false;
    double t_seen = 0, deadline = now() + 300;
    while (!stop) {
        k++;
        int seen = atomic_load(&g_usr1);
        double t = now();
        CHECK(det_should_preempt(ctx, &stop));
        if (seen && !seen_at) {
            seen_at = k;
            t_seen = t;
        }
        if (!stop) usleep(period);
        if (now() > deadline) DIE("no preemption after 300 s (%ld calls)", k);
    }
    double t_true = now();
    if (rank == 0 && !seen_at) DIE("the chief stopped at call %ld before it saw the signal", k);
    printf("RESULT %d stopped_at=%ld seen_at=%ld t_seen=%.6f t_true=%.6f\n", rank, k, seen_at, t_seen, t_true);
    CHECK(det_core_close(ctx));
    return 0;
}

/* A WorkersAskChief context whose ranks have all met once (one allgather). */
static det_context *open_joined(int32_t *rank) {
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    CHECK(det_dist_rank(ctx, rank));
    det_bytes_list *l;
    CHECK(det_dist_allgather(ctx, "x", 1, &l));
    det_bytes_list_free(l);
    return ctx;
}

/* Everyone loops on allgather; the driver SIGKILLs one rank. The others must fail with
 * DET_ERR_DISTRIBUTED naming the lost rank: exit with that status after printing the message. */
static int scenario_kill(int argc, char **argv) {
    (void)argc;
    (void)argv;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    printf("READY %d\n", rank);
    fflush(stdout);
    for (long i = 0;; i++) {
        det_bytes_list *l;
        det_status st = det_dist_allgather(ctx, &i, sizeof i, &l);
        if (st != DET_OK) {
            printf("RESULT %d failed status=%s after=%ld msg=%s\n", rank, det_status_name(st), i, det_last_error_message());
            fflush(stdout);
            /* Also in a file: a launcher that aborts the job may stop forwarding output. */
            char p[600];
            snprintf(p, sizeof p, "%s/kill-result-%d.txt", getenv("DIST_WORK") ? getenv("DIST_WORK") : "/tmp", rank);
            FILE *f = fopen(p, "w");
            if (f) {
                fprintf(f, "RESULT %d failed status=%s after=%ld msg=%s\n", rank, det_status_name(st), i,
                        det_last_error_message());
                fclose(f);
            }
            det_core_close(ctx);
            return st;
        }
        det_bytes_list_free(l);
        usleep(1000);
    }
}

/* Rank 1 is stopped (SIGSTOP by the test) while the chief broadcasts 16 MiB values: the send to
 * it stalls once the socket buffers are full, and must fail after DIST_TIMEOUT instead of
 * blocking the chief forever; the other ranks are told. */
static int scenario_stalled(int argc, char **argv) {
    (void)argc;
    (void)argv;
    int32_t rank;
    det_context *ctx = open_joined(&rank);
    det_bytes_list *l;
    printf("READY %d\n", rank);
    fflush(stdout);
    if (rank == 0) usleep(500000); /* the test stops rank 1 meanwhile */
    size_t n = (size_t)16 << 20;
    char *buf = calloc(n, 1);
    double t0 = now();
    for (int i = 0; i < 100; i++) {
        det_status st = det_dist_broadcast(ctx, rank == 0 ? buf : NULL, rank == 0 ? n : 0, &l);
        if (st != DET_OK) {
            printf("RESULT %d failed status=%s after=%d seconds=%.1f msg=%s\n", rank, det_status_name(st), i,
                   now() - t0, det_last_error_message());
            fflush(stdout);
            free(buf);
            det_core_close(ctx);
            return 4;
        }
        det_bytes_list_free(l);
    }
    printf("RESULT %d ok\n", rank);
    free(buf);
    det_core_close(ctx);
    return 0;
}

/* Rank 1 never joins the second allgather: everyone else must time out (DIST_TIMEOUT) and
 * report it, instead of hanging. */
static int scenario_straggler(int argc, char **argv) {
    (void)argc;
    (void)argv;
    int32_t rank;
    det_context *ctx = open_joined(&rank);
    det_bytes_list *l;
    if (rank == 1) {
        sleep(6); /* alive but absent, longer than DIST_TIMEOUT */
        _exit(0);
    }
    double t0 = now();
    det_status st = det_dist_allgather(ctx, "y", 1, &l);
    printf("RESULT %d status=%s seconds=%.1f msg=%s\n", rank, det_status_name(st), now() - t0, det_last_error_message());
    fflush(stdout);
    det_core_close(ctx);
    _exit(st == DET_OK ? 0 : 4);
}

/* The searcher in WorkersAskChief mode: every rank gets the chief's operation. */
static int scenario_searcher(int argc, char **argv) {
    (void)argc;
    (void)argv;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    det_searcher_op *op;
    CHECK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    if (!op) DIE("no operation");
    int64_t len;
    CHECK(det_searcher_op_length(op, &len));
    if (rank == 0) {
        CHECK(det_searcher_op_report_progress(op, (double)len));
        CHECK(det_searcher_op_report_completed(op, 0.5));
    } else if (det_searcher_op_report_progress(op, 1) != DET_ERR_STATE) {
        DIE("a worker could report progress");
    }
    det_searcher_op *next;
    CHECK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &next));
    if (next) DIE("a second operation");
    CHECK(det_searcher_op_free(op));
    if (rank != 0) {
        det_status st = det_searcher_next_op(ctx, DET_SEARCHER_MODE_CHIEF_ONLY, &next);
        if (st != DET_ERR_STATE || !strstr(det_last_error_message(), "non-chief")) DIE("ChiefOnly on a worker was not refused");
        bool b;
        if (det_should_preempt(ctx, &b) != DET_OK) DIE("should_preempt failed");
    } else {
        bool b;
        if (det_should_preempt(ctx, &b) != DET_OK) DIE("should_preempt failed");
    }
    printf("RESULT %d ok length=%lld\n", rank, (long long)len);
    CHECK(det_core_close(ctx));
    return 0;
}

static void write_file(const char *dir, const char *name, const char *content) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) DIE("cannot write %s", p);
    fputs(content, f);
    fclose(f);
}

static bool select_own(const char *path, void *ud) {
    char want[64];
    snprintf(want, sizeof want, "rank%d.bin", *(int *)ud);
    return strcmp(path, want) == 0;
}

static bool select_all(const char *path, void *ud) {
    (void)path;
    (void)ud;
    return true;
}

/* Sharded checkpoints. Modes:
 *   store     every rank writes rank<r>.bin and an identical common.txt through store_path(shard)
 *   upload    every rank uploads its own folder (rank<r>.bin, common.txt); odd ranks pass no folder
 *   conflict  like upload, plus a conflict.txt that differs per rank: everyone must fail alike
 *   metaconflict  ranks disagree on a metadata key: everyone fails at begin
 *   abort     rank 1 abandons its scope: everyone's end fails, nothing is stored
 *   download  store as above, then LocalWorkersShareDownload with per-rank selectors */
static int scenario_shard(int argc, char **argv) {
    const char *mode = argc > 0 ? argv[0] : "store";
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank, size, lrank, cross;
    CHECK(det_dist_rank(ctx, &rank));
    CHECK(det_dist_size(ctx, &size));
    CHECK(det_dist_local_rank(ctx, &lrank));
    CHECK(det_dist_cross_rank(ctx, &cross));
    char meta[256], name[64], content[64];
    snprintf(name, sizeof name, "rank%d.bin", rank);
    snprintf(content, sizeof content, "data of rank %d", rank);
    char id[DET_STORAGE_ID_LEN] = {0};
    det_status st = DET_OK;
    if (!strcmp(mode, "store") || !strcmp(mode, "abort") || !strcmp(mode, "metaconflict") || !strcmp(mode, "download") ||
        !strcmp(mode, "restore")) {
        if (!strcmp(mode, "metaconflict"))
            snprintf(meta, sizeof meta, "{\"steps_completed\": 5, \"lr\": %d}", rank);
        else
            snprintf(meta, sizeof meta, "{\"steps_completed\": 5, \"from_rank%d\": true, \"shared\": {\"k%d\": %d}}", rank, rank, rank);
        det_ckpt_store *s;
        st = det_ckpt_store_path_begin(ctx, meta, true, &s);
        if (st == DET_OK) {
            const char *dir;
            CHECK(det_ckpt_store_path(s, &dir));
            write_file(dir, name, content);
            write_file(dir, "common.txt", "same on every rank");
            if (!strcmp(mode, "abort") && rank == 1) {
                st = det_ckpt_store_path_abort(s);
                printf("RESULT %d aborted status=%s\n", rank, det_status_name(st));
                CHECK(det_core_close(ctx));
                return 0;
            }
            st = det_ckpt_store_path_end(s, id);
        }
    } else {
        char src[512];
        snprintf(src, sizeof src, "%s/src-rank%d", getenv("DIST_WORK"), rank);
        mkdir(src, 0755);
        write_file(src, name, content);
        write_file(src, "common.txt", "same on every rank");
        if (!strcmp(mode, "conflict")) write_file(src, "conflict.txt", content);
        snprintf(meta, sizeof meta, "{\"steps_completed\": 7, \"by\": {\"r%d\": 1}}", rank);
        bool none = !strcmp(mode, "upload") && rank % 2 == 1;
        st = det_ckpt_upload(ctx, none ? NULL : src, meta, true, none ? NULL : select_all, NULL, id);
    }
    if (st != DET_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", det_last_error_message());
        for (char *c = msg; *c; c++)
            if (*c == '\n') *c = '|';
        printf("RESULT %d failed status=%s msg=%s\n", rank, det_status_name(st), msg);
        det_core_close(ctx);
        return 0;
    }
    if (!strcmp(mode, "download")) {
        char dl[512];
        snprintf(dl, sizeof dl, "%s/dl-node%d", getenv("DIST_WORK"), cross);
        int me = rank;
        CHECK(det_ckpt_download(ctx, id, dl, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, select_own, &me));
        /* Every local rank's file is there once the collective returns. */
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dl, name);
        FILE *f = fopen(p, "rb");
        if (!f) DIE("%s missing after the shared download", p);
        fclose(f);
        snprintf(p, sizeof p, "%s/common.txt", dl);
        f = fopen(p, "rb");
        if (f) DIE("common.txt was downloaded although no rank selected it");
    }
    if (!strcmp(mode, "restore")) {
        /* Shared restore: the local chief downloads once; every local rank reads its own file;
         * the temporary folder stays until every local rank has ended. */
        int me = rank;
        det_ckpt_restore *r;
        CHECK(det_ckpt_restore_path_begin(ctx, id, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, select_own, &me, &r));
        const char *dir;
        CHECK(det_ckpt_restore_path(r, &dir));
        char p[1024], keep[1024];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        snprintf(keep, sizeof keep, "%s", dir);
        FILE *f = fopen(p, "rb");
        if (!f) DIE("%s missing in the shared restore", p);
        char got[64] = {0};
        if (!fgets(got, sizeof got, f) || strcmp(got, content) != 0) DIE("%s holds %s", p, got);
        fclose(f);
        usleep((useconds_t)(rank * 100000)); /* the local chief must not remove it under others */
        CHECK(det_ckpt_restore_path_end(r));
        printf("RESULT %d restored dir=%s\n", rank, keep);
    }
    printf("RESULT %d stored id=%s\n", rank, id);
    CHECK(det_core_close(ctx));
    return 0;
}

/* Checkpoint lifecycle across ranks. Modes:
 *   retain N   N sharded checkpoints (each rank writes rank<r>.bin; odd ranks write slowly, so
 *              the chief's background deletion of the previous checkpoint overlaps the writing of
 *              the next) under the retention policy of the environment (DET_SAVE_TRIAL_LATEST)
 *   resume     every rank restores the run's resume point with LocalWorkersShareDownload and
 *              prints the checkpoint it got and the content of its model.bin */
static int scenario_lifecycle(int argc, char **argv) {
    const char *mode = argc > 0 ? argv[0] : "retain";
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    if (!strcmp(mode, "retain")) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        char id[DET_STORAGE_ID_LEN] = {0};
        for (int i = 1; i <= n; i++) {
            char meta[128], name[64], content[64];
            snprintf(meta, sizeof meta, "{\"steps_completed\": %d}", i * 10);
            snprintf(name, sizeof name, "rank%d.bin", rank);
            snprintf(content, sizeof content, "rank %d at step %d", rank, i * 10);
            det_ckpt_store *s;
            CHECK(det_ckpt_store_path_begin(ctx, meta, true, &s));
            const char *dir;
            CHECK(det_ckpt_store_path(s, &dir));
            if (rank % 2 == 1) usleep(200000);
            write_file(dir, name, content);
            CHECK(det_ckpt_store_path_end(s, id));
        }
        printf("RESULT %d stored id=%s\n", rank, id);
    } else {
        char *latest = NULL;
        CHECK(det_info_latest_checkpoint(ctx, &latest));
        if (!latest) DIE("no resume point");
        det_ckpt_restore *r;
        CHECK(det_ckpt_restore_path_begin(ctx, latest, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, NULL, NULL, &r));
        const char *dir, *rid;
        CHECK(det_ckpt_restore_path(r, &dir));
        CHECK(det_ckpt_restore_storage_id(r, &rid));
        char p[1024], got[128] = {0};
        snprintf(p, sizeof p, "%s/model.bin", dir);
        FILE *f = fopen(p, "rb");
        if (!f || !fgets(got, sizeof got, f)) DIE("cannot read %s", p);
        fclose(f);
        char *now_latest = NULL;
        CHECK(det_info_latest_checkpoint(ctx, &now_latest));
        printf("RESULT %d asked=%s restored=%s latest=%s content=%s\n", rank, latest, rid, now_latest, got);
        det_string_free(latest);
        det_string_free(now_latest);
        CHECK(det_ckpt_restore_path_end(r));
    }
    CHECK(det_core_close(ctx));
    return 0;
}

/* Where the launcher put this process: detcore's numbers beside the launcher's own variables
 * (the test compares them), and the job identity. Then one allgather of every rank's host name,
 * so that the ranks of one node index are seen to share a host. */
static int scenario_ranks(int argc, char **argv) {
    (void)argc;
    (void)argv;
    det_distributed_config d;
    CHECK(det_distributed_config_default(&d, sizeof d));
    CHECK(det_distributed_from_env(DET_LAUNCHER_AUTO, &d));
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, false);
    int32_t rank, size, lrank, lsize, cross, csize;
    CHECK(det_dist_rank(ctx, &rank));
    CHECK(det_dist_size(ctx, &size));
    CHECK(det_dist_local_rank(ctx, &lrank));
    CHECK(det_dist_local_size(ctx, &lsize));
    CHECK(det_dist_cross_rank(ctx, &cross));
    CHECK(det_dist_cross_size(ctx, &csize));
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    det_bytes_list *l;
    CHECK(det_dist_allgather(ctx, host, strlen(host), &l));
    size_t n;
    CHECK(det_bytes_list_len(l, &n));
    if ((int32_t)n != size) DIE("allgather gave %zu items for %d ranks", n, size);
    CHECK(det_bytes_list_free(l));
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS",
                          "SLURM_LOCALID", "SLURM_NODEID"};
    printf("RESULT %d ranks rank=%d size=%d local_rank=%d local_size=%d cross_rank=%d cross_size=%d job=%s", rank, rank,
           size, lrank, lsize, cross, csize, d.job_id ? d.job_id : "(none)");
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) printf(" %s=%s", vars[i], getenv(vars[i]));
    printf("\n");
    CHECK(det_core_close(ctx));
    return 0;
}

/* A training loop for preemption and resume under a real launcher:
 *   train <max_steps> [step_ms]
 * (`+N` for max_steps: N steps past the resumed step.)
 * Resumes from the run's latest checkpoint (each rank reads its own shard rank<r>.txt, which
 * must be there), then steps until det_should_preempt says stop or max_steps, and stores a
 * sharded checkpoint (every rank its rank<r>.txt) at the last step. Prints READY, RESUMED,
 * STORED and PREEMPTED/FINISHED lines with the step. */
static int scenario_train(int argc, char **argv) {
    /* "+N": N steps past the resumed step. */
    bool relative = argc > 0 && argv[0][0] == '+';
    long max_steps = argc > 0 ? atol(argv[0] + relative) : 1000000;
    long step_ms = argc > 1 ? atol(argv[1]) : 10;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_WORKERS_ASK_CHIEF, true);
    int32_t rank, size;
    CHECK(det_dist_rank(ctx, &rank));
    CHECK(det_dist_size(ctx, &size));
    long start = 0;
    char *latest = NULL;
    CHECK(det_info_latest_checkpoint(ctx, &latest));
    if (latest) {
        det_ckpt_restore *r;
        CHECK(det_ckpt_restore_path_begin(ctx, latest, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL, &r));
        const char *dir;
        CHECK(det_ckpt_restore_path(r, &dir));
        char p[1024];
        snprintf(p, sizeof p, "%s/rank%d.txt", dir, rank);
        FILE *f = fopen(p, "r");
        if (!f) DIE("resumed checkpoint %s lacks this rank's shard %s", latest, p);
        if (fscanf(f, "step %ld", &start) != 1) DIE("%s is not a shard of this test", p);
        fclose(f);
        CHECK(det_ckpt_restore_path_end(r));
        printf("RESULT %d resumed step=%ld id=%s\n", rank, start, latest);
        det_string_free(latest);
    }
    if (relative) max_steps += start;
#ifdef DIST_WORKER_MPI
    int mpi_sum = 0, one = 1;
    if (MPI_Allreduce(&one, &mpi_sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS || mpi_sum != size)
        DIE("MPI_Allreduce beside detcore gave %d for %d ranks", mpi_sum, size);
#endif
    printf("READY %d\n", rank);
    fflush(stdout);
    bool stop = false;
    long step = start;
    while (step < max_steps && !stop) {
        step++;
        usleep((useconds_t)(step_ms * 1000));
        CHECK(det_should_preempt(ctx, &stop));
    }
    char meta[128], name[64], content[64];
    snprintf(meta, sizeof meta, "{\"steps_completed\": %ld}", step);
    det_ckpt_store *s;
    CHECK(det_ckpt_store_path_begin(ctx, meta, true, &s));
    const char *dir;
    CHECK(det_ckpt_store_path(s, &dir));
    snprintf(name, sizeof name, "rank%d.txt", rank);
    snprintf(content, sizeof content, "step %ld\n", step);
    write_file(dir, name, content);
    char id[DET_STORAGE_ID_LEN] = {0};
    det_status st = det_ckpt_store_path_end(s, id);
    if (st != DET_OK) {
        printf("RESULT %d failed status=%s msg=%s\n", rank, det_status_name(st), det_last_error_message());
        fflush(stdout);
        det_core_close(ctx);
        return 4;
    }
    printf("RESULT %d stored step=%ld id=%s\n", rank, step, id);
    printf("RESULT %d %s step=%ld\n", rank, stop ? "preempted" : "finished", step);
    CHECK(det_core_close(ctx));
    return 0;
}

/* Chief-only rules on workers, with Python's messages: store_path/upload with shard=false and
 * should_preempt in ChiefOnly mode. */
static int scenario_chiefonly(int argc, char **argv) {
    (void)argc;
    (void)argv;
    det_context *ctx = open_ctx(DET_PREEMPT_MODE_CHIEF_ONLY, false);
    int32_t rank;
    CHECK(det_dist_rank(ctx, &rank));
    bool b;
    det_ckpt_store *s;
    char id[DET_STORAGE_ID_LEN];
    if (rank == 0) {
        CHECK(det_should_preempt(ctx, &b));
        CHECK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s));
        CHECK(det_ckpt_store_path_end(s, id));
    } else {
        char want[256];
        snprintf(want, sizeof want,
                 "PreemptContext was configured with preempt_mode=ChiefOnly but .should_preempt() was called from non-chief worker of rank=%d",
                 rank);
        if (det_should_preempt(ctx, &b) != DET_ERR_STATE || !strstr(det_last_error_message(), want))
            DIE("ChiefOnly should_preempt on a worker: %s", det_last_error_message());
        snprintf(want, sizeof want, "cannot call CheckpointContext.store_path(shard=False) from non-chief worker (rank=%d)", rank);
        if (det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s) != DET_ERR_STATE ||
            !strstr(det_last_error_message(), want))
            DIE("store_path(shard=False) on a worker: %s", det_last_error_message());
        snprintf(want, sizeof want, "cannot call CheckpointContext.upload(shard=False) from non-chief worker (rank=%d)", rank);
        if (det_ckpt_upload(ctx, "/tmp", "{\"steps_completed\": 1}", false, NULL, NULL, id) != DET_ERR_STATE ||
            !strstr(det_last_error_message(), want))
            DIE("upload(shard=False) on a worker: %s", det_last_error_message());
    }
    printf("RESULT %d ok\n", rank);
    CHECK(det_core_close(ctx));
    return 0;
}

static int run(int argc, char **argv) {
    const char *s = argv[1];
    if (!strcmp(s, "collectives")) return scenario_collectives(argc - 2, argv + 2);
    if (!strcmp(s, "race")) return scenario_race(argc - 2, argv + 2);
    if (!strcmp(s, "preempt")) return scenario_preempt(argc - 2, argv + 2);
    if (!strcmp(s, "lag")) return scenario_lag(argc - 2, argv + 2);
    if (!strcmp(s, "kill")) return scenario_kill(argc - 2, argv + 2);
    if (!strcmp(s, "stalled")) return scenario_stalled(argc - 2, argv + 2);
    if (!strcmp(s, "straggler")) return scenario_straggler(argc - 2, argv + 2);
    if (!strcmp(s, "searcher")) return scenario_searcher(argc - 2, argv + 2);
    if (!strcmp(s, "shard")) return scenario_shard(argc - 2, argv + 2);
    if (!strcmp(s, "chiefonly")) return scenario_chiefonly(argc - 2, argv + 2);
    if (!strcmp(s, "lifecycle")) return scenario_lifecycle(argc - 2, argv + 2);
    if (!strcmp(s, "ranks")) return scenario_ranks(argc - 2, argv + 2);
    if (!strcmp(s, "train")) return scenario_train(argc - 2, argv + 2);
    fprintf(stderr, "unknown scenario %s\n", s);
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!getenv("DETCORE_LOG_LEVEL")) det_log_set_level(DET_LOG_LEVEL_WARNING);
    if (argc < 2) return 2;
#ifdef DIST_WORKER_MPI
    /* MPI first, detcore inside, MPI_Finalize last: the order of an MPI program that adds detcore. */
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) DIE("MPI_Init failed");
    int rc = run(argc, argv);
    MPI_Finalize();
    return rc;
#else
    return run(argc, argv);
#endif
}
