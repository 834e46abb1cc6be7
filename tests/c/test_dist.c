/* Collectives and launcher environments with one process (the multi-process tests are in
 * tests/python/test_distributed.py). */
#include "check.h"

#include <stddef.h>

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
                          "INTER_TRAIN_PROCESS_COMM_PORT_1", "SLURM_JOB_ID", "SLURM_STEP_ID", "DETCORE_JOB_ID",
                          "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
                          "OMPI_COMM_WORLD_NODE_RANK", "PMIX_NAMESPACE"};
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

    /* What srun exports to task 1 of step 0 of job 81. */
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_NTASKS", "2", 1);
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_NODEID", "0", 1);
    setenv("SLURM_NNODES", "1", 1);
    setenv("SLURM_JOB_ID", "81", 1);
    setenv("SLURM_STEP_ID", "0", 1);
    CHECK_OK(det_distributed_config_default(&c, sizeof c));
    CHECK(c.job_id == NULL && c.port == 0);
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK(c.rank == 1 && c.size == 2 && c.local_rank == 1 && c.local_size == 2 && c.cross_size == 1);
    CHECK_STR(c.job_id, "slurm:81.0");
    CHECK(c.port == 0); /* chosen from the job identity at init */
    /* A job id the program set is kept; DETCORE_JOB_ID beats the launcher's. */
    c.job_id = "mine";
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK_STR(c.job_id, "mine");
    setenv("DETCORE_JOB_ID", "pinned", 1);
    c.job_id = NULL;
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &c));
    CHECK_STR(c.job_id, "pinned");
    unsetenv("DETCORE_JOB_ID");
    /* A caller compiled with the first published struct (no job_id field): nothing is written
     * past its end. */
    {
        union {
            det_distributed_config c;
            unsigned char b[sizeof(det_distributed_config) + 16];
        } u;
        size_t v1 = offsetof(det_distributed_config, job_id);
        CHECK_OK(det_distributed_config_default(&u.c, v1));
        memset(u.b + v1, 0xAB, sizeof u.b - v1);
        CHECK_OK(det_distributed_from_env(DET_LAUNCHER_AUTO, &u.c));
        CHECK(u.c.rank == 1 && u.c.size == 2);
        for (size_t i = v1; i < sizeof u.b; i++) CHECK(u.b[i] == 0xAB);
    }
    setenv("SLURM_PROCID", "7", 1);
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_SLURM, &c), DET_ERR_INVALID_ARGUMENT, "rank 7 must be less than size 2");
    /* The batch script of `sbatch --ntasks=2` (no step): refused at once, pointing at srun. */
    setenv("SLURM_PROCID", "0", 1);
    setenv("SLURM_LOCALID", "0", 1);
    unsetenv("SLURM_STEP_ID");
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_AUTO, &c), DET_ERR_INVALID_ARGUMENT,
              "runs in the batch script of Slurm job 81 (SLURM_NTASKS=2 but no SLURM_STEP_ID)");
    CHECK(strstr(det_last_error_message(), "srun") != NULL);
    clear_launcher_env();

    /* What `mpirun -np 4` exports to rank 2 on one node (Open MPI 4.1): NODE_RANK is 2 there, but
     * it is not a node index; the job identity is the PMIx namespace. */
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
    setenv("OMPI_COMM_WORLD_NODE_RANK", "2", 1);
    setenv("PMIX_NAMESPACE", "1595146241", 1);
    CHECK_OK(det_distributed_config_default(&c, sizeof c));
    CHECK_OK(det_distributed_from_env(DET_LAUNCHER_OPENMPI, &c));
    CHECK(c.rank == 2 && c.size == 4 && c.local_rank == 2 && c.local_size == 4 && c.cross_rank == 0 && c.cross_size == 1);
    CHECK_STR(c.job_id, "openmpi:1595146241");
    clear_launcher_env();

    CHECK_ERR(det_distributed_from_env(99, &c), DET_ERR_INVALID_ARGUMENT, "launcher: unknown value 99");
    CHECK_ERR(det_distributed_from_env(DET_LAUNCHER_AUTO, NULL), DET_ERR_INVALID_ARGUMENT, "cfg is NULL");
}

/* det_distributed_config.job_id and det_init_options.slurm_requeue at init. */
static void job_id_and_requeue_options(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("dist1-opts"), "dist1-opts");
    det_distributed_config d;
    CHECK_OK(det_distributed_config_default(&d, sizeof d));
    o.distributed = &d;
    det_context *ctx = NULL;
    d.job_id = "\xff\xfe";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "distributed.job_id");
    d.job_id = "a\nb";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "job_id \"a\\nb\" must be 1 to 256 bytes of printable text");
    static char longer[300];
    memset(longer, 'j', sizeof longer - 1);
    d.job_id = longer;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "must be 1 to 256 bytes");
    d.job_id = "";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "must be 1 to 256 bytes");
    d.job_id = NULL;
    setenv("DETCORE_JOB_ID", "a\tb", 1);
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "DETCORE_JOB_ID: distributed: job_id \"a\\tb\"");
    unsetenv("DETCORE_JOB_ID");
    d.job_id = "my-job";
    /* Requeue asked for outside Slurm: close still succeeds (and says so in the log). */
    unsetenv("SLURM_JOB_ID");
    o.slurm_requeue = true;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(single_rank_collectives), TEST(launcher_environments), TEST(job_id_and_requeue_options))
