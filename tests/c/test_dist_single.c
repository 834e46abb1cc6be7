/* Collectives and launcher environments with one process (the multi-process tests are in
 * tests/python/test_distributed.py). */
#include "check.h"

static det_context *open_ctx(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("dist1"), "dist1");
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static void single_rank_collectives(void) {
    det_context *ctx = open_ctx();
    det_bytes_list *l = NULL;
    size_t n = 0, len = 99;
    const void *data = NULL;

    CHECK_OK(det_dist_allgather(ctx, "abc", 3, &l));
    CHECK_OK(det_bytes_list_len(l, &n));
    CHECK(n == 1);
    CHECK_OK(det_bytes_list_get(l, 0, &data, &len));
    CHECK(len == 3 && memcmp(data, "abc", 3) == 0);
    CHECK_ERR(det_bytes_list_get(l, 1, &data, &len), DET_ERR_INVALID_ARGUMENT, "index 1 is out of range (the list has 1 items)");
    CHECK_OK(det_bytes_list_free(l));
    CHECK_ERR(det_bytes_list_free(l), DET_ERR_STATE, "not open");
    CHECK_ERR(det_bytes_list_len(l, &n), DET_ERR_STATE, "not open");

    CHECK_OK(det_dist_gather(ctx, NULL, 0, &l));
    CHECK(l != NULL);
    CHECK_OK(det_bytes_list_get(l, 0, &data, &len));
    CHECK(len == 0 && data == NULL);
    CHECK_OK(det_bytes_list_free(l));

    CHECK_OK(det_dist_broadcast(ctx, "xy", 2, &l));
    CHECK_OK(det_bytes_list_get(l, 0, &data, &len));
    CHECK(len == 2 && memcmp(data, "xy", 2) == 0);
    CHECK_OK(det_bytes_list_free(l));

    CHECK_OK(det_dist_allgather_local(ctx, "q", 1, &l));
    CHECK_OK(det_bytes_list_free(l));
    CHECK_OK(det_dist_gather_local(ctx, "q", 1, &l));
    CHECK_OK(det_bytes_list_free(l));
    CHECK_OK(det_dist_broadcast_local(ctx, "q", 1, &l));
    CHECK_OK(det_bytes_list_free(l));
    CHECK_OK(det_dist_barrier(ctx));
    CHECK_OK(det_bytes_list_free(NULL));

    CHECK_ERR(det_dist_allgather(ctx, NULL, 5, &l), DET_ERR_INVALID_ARGUMENT, "data is NULL but len is 5");
    CHECK_ERR(det_dist_allgather(ctx, "a", 1, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_bytes_list_get(NULL, 0, &data, &len), DET_ERR_INVALID_ARGUMENT, "list is NULL");
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_dist_allgather(ctx, "a", 1, &l), DET_ERR_STATE, "closed");
}

static void clear_launcher_env(void) {
    const char *vars[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                          "LOCAL_SIZE", "CROSS_RANK", "CROSS_SIZE", "MASTER_ADDR", "DET_CHIEF_IP", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NNODES", "SLURM_JOB_NODELIST",
                          "OMPI_COMM_WORLD_RANK", "PMI_RANK", "HOROVOD_RANK", "DETCORE_CHIEF_PORT",
                          "INTER_TRAIN_PROCESS_COMM_PORT_1"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

static void launcher_environments(void) {
    det_distributed_config c;
    clear_launcher_env();
    CHECK_OK(det_distributed_config_default(&c, sizeof c));
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK(c.rank == 0 && c.size == 1);

    setenv("RANK", "3", 1);
    setenv("WORLD_SIZE", "4", 1);
    setenv("LOCAL_RANK", "1", 1);
    setenv("LOCAL_WORLD_SIZE", "2", 1);
    setenv("GROUP_RANK", "1", 1);
    setenv("GROUP_WORLD_SIZE", "2", 1);
    setenv("MASTER_ADDR", "10.1.2.3", 1);
    setenv("INTER_TRAIN_PROCESS_COMM_PORT_1", "23456", 1);
    CHECK_OK(det_distributed_config_default(&c, sizeof c));
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK(c.rank == 3 && c.size == 4 && c.local_rank == 1 && c.local_size == 2 && c.cross_rank == 1 && c.cross_size == 2);
    CHECK_STR(c.chief_ip, "10.1.2.3");
    CHECK(c.port == 23456);

    setenv("LOCAL_WORLD_SIZE", "3", 1);
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_TORCH, &c), DET_ERR_INVALID_ARGUMENT, "");
    unsetenv("WORLD_SIZE");
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_TORCH, &c), DET_ERR_INVALID_ARGUMENT, "WORLD_SIZE is not set");
    clear_launcher_env();

    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_NTASKS", "2", 1);
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_NODEID", "0", 1);
    setenv("SLURM_NNODES", "1", 1);
    CHECK_OK(det_distributed_config_default(&c, sizeof c));
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK(c.rank == 1 && c.size == 2 && c.local_rank == 1 && c.local_size == 2 && c.cross_size == 1);
    setenv("SLURM_PROCID", "7", 1);
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_SLURM, &c), DET_ERR_INVALID_ARGUMENT, "rank 7 must be less than size 2");
    clear_launcher_env();

    CHECK_ERR(det_distributed_from_env(99, &c), DET_ERR_INVALID_ARGUMENT, "launcher: unknown value 99");
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_AUTO, NULL), DET_ERR_INVALID_ARGUMENT, "cfg is NULL");
}

TEST_MAIN(TEST(single_rank_collectives), TEST(launcher_environments))
