/* Every entry point that takes a handle, called with a NULL handle and with a handle that was
 * closed: each returns its status (DET_ERR_INVALID_ARGUMENT naming the argument, DET_ERR_STATE
 * saying it is closed) instead of crashing. CMake counts the header's functions that take a
 * det_context (DETCORE_TEST_CONTEXT_FUNCTIONS), so a new one that is not listed here fails. */
#include "check.h"

static bool select_all(const char *p, void *u) {
    (void)p;
    (void)u;
    return true;
}

/* Every function whose first argument is a det_context, with valid other arguments. `C` is the
 * context under test. */
#define CONTEXT_CALLS(X)                                                                          \
    X(det_ckpt_store_path_begin(C, "{}", false, &store))                                          \
    X(det_ckpt_store_path_begin_steps(C, 1, NULL, false, &store))                                 \
    X(det_ckpt_upload(C, "/tmp", "{}", false, NULL, NULL, id))                                    \
    X(det_ckpt_download(C, "abc", "/tmp/x", 0, select_all, NULL))                                 \
    X(det_ckpt_restore_path_begin(C, "abc", 0, NULL, NULL, &restore))                             \
    X(det_ckpt_get_metadata(C, "abc", &s))                                                        \
    X(det_ckpt_delete(C, "abc"))                                                                  \
    X(det_ckpt_wait(C))                                                                           \
    X(det_dist_gather(C, "x", 1, &list))                                                          \
    X(det_dist_allgather(C, "x", 1, &list))                                                       \
    X(det_dist_broadcast(C, "x", 1, &list))                                                       \
    X(det_dist_gather_local(C, "x", 1, &list))                                                    \
    X(det_dist_allgather_local(C, "x", 1, &list))                                                 \
    X(det_dist_broadcast_local(C, "x", 1, &list))                                                 \
    X(det_dist_barrier(C))                                                                        \
    X(det_info_is_on_cluster(C, &b))                                                              \
    X(det_info_latest_checkpoint(C, &s))                                                          \
    X(det_info_steps_completed(C, &i64))                                                          \
    X(det_info_hparams_json(C, &s))                                                               \
    X(det_info_get_hparam_f64(C, "x", &d))                                                        \
    X(det_info_get_hparam_i64(C, "x", &i64))                                                      \
    X(det_info_get_hparam_str(C, "x", &s))                                                        \
    X(det_info_get_hparam_f64_or(C, "x", 1.0, &d))                                                \
    X(det_info_get_hparam_i64_or(C, "x", 1, &i64))                                                \
    X(det_info_get_hparam_str_or(C, "x", "d", &s))                                                \
    X(det_info_run_name(C, &s))                                                                   \
    X(det_info_run_dir(C, &s))                                                                    \
    X(det_dist_rank(C, &i32))                                                                     \
    X(det_dist_size(C, &i32))                                                                     \
    X(det_dist_local_rank(C, &i32))                                                               \
    X(det_dist_local_size(C, &i32))                                                               \
    X(det_dist_cross_rank(C, &i32))                                                               \
    X(det_dist_cross_size(C, &i32))                                                               \
    X(det_info_trial_id(C, &i64))                                                                 \
    X(det_info_experiment_id(C, &i64))                                                            \
    X(det_info_trial_seed(C, &u32))                                                               \
    X(det_info_trial_run_id(C, &i64))                                                             \
    X(det_info_experiment_config_json(C, &s))                                                     \
    X(det_info_user_data_json(C, &s))                                                             \
    X(det_info_task_type(C, &s))                                                                  \
    X(det_info_task_id(C, &s))                                                                    \
    X(det_info_allocation_id(C, &s))                                                              \
    X(det_info_cluster_id(C, &s))                                                                 \
    X(det_info_agent_id(C, &s))                                                                   \
    X(det_info_master_url(C, &s))                                                                 \
    X(det_info_container_count(C, &n))                                                            \
    X(det_info_container_addr(C, 0, &s))                                                          \
    X(det_info_container_slot_count(C, 0, &i32))                                                  \
    X(det_info_container_rank(C, &i32))                                                           \
    X(det_info_slot_id_count(C, &n))                                                              \
    X(det_info_slot_id(C, 0, &i32))                                                               \
    X(det_info_gpu_uuid_count(C, &n))                                                             \
    X(det_info_gpu_uuid(C, 0, &s))                                                                \
    X(det_info_trial_debug(C, &b))                                                                \
    X(det_info_inter_node_network_interface(C, &s))                                               \
    X(det_core_alert(C, "t", "d", 0))                                                             \
    X(det_experimental_report_task_using_checkpoint(C, "abc"))                                    \
    X(det_experimental_report_task_using_model_version(C, "abc", 1, 2))                           \
    X(det_should_preempt(C, &b))                                                                  \
    X(det_should_preempt_ex(C, false, &b))                                                        \
    X(det_preempt_acknowledge(C))                                                                 \
    X(det_preempt_seconds_remaining(C, &b, &d))                                                   \
    X(det_profiler_on(C, 1.0, 10))                                                                \
    X(det_profiler_off(C))                                                                        \
    X(det_searcher_next_op(C, 0, &op))                                                            \
    X(det_searcher_get_configured_units(C, &i32))                                                 \
    X(det_searcher_acknowledge_out_of_ops(C))                                                     \
    X(det_train_get_tensorboard_path(C, &s))                                                      \
    X(det_train_upload_tensorboard_files(C, NULL, NULL, NULL, NULL))                              \
    X(det_train_flush_tensorboard(C, 1.0))                                                        \
    X(det_train_report_training_metrics(C, 1, "{}", NULL))                                        \
    X(det_train_report_validation_metrics(C, 1, "{}"))                                            \
    X(det_train_report_metrics(C, "g", 1, "{}"))                                                  \
    X(det_train_report_scalars(C, "g", 1, names, vals, 1))                                        \
    X(det_train_set_status(C, "x"))                                                               \
    X(det_train_report_progress(C, 0.5))                                                          \
    X(det_train_report_early_exit(C, 0))                                                          \
    X(det_train_get_experiment_best_validation(C, &b, &d))                                        \
    X(det_train_set_run_metadata(C, "{}", &s))                                                    \
    X(det_train_get_run_metadata(C, &s))                                                          \
    X(det_train_flush(C, 1.0))

/* Locals the calls above write to. */
#define CALL_LOCALS                                                                               \
    det_ckpt_store *store = NULL;                                                                 \
    det_ckpt_restore *restore = NULL;                                                             \
    det_bytes_list *list = NULL;                                                                  \
    det_searcher_op *op = NULL;                                                                   \
    char id[DET_STORAGE_ID_LEN];                                                                  \
    char *s = NULL;                                                                               \
    bool b = false;                                                                               \
    double d = 0;                                                                                 \
    int64_t i64 = 0;                                                                              \
    int32_t i32 = 0;                                                                              \
    uint32_t u32 = 0;                                                                             \
    size_t n = 0;                                                                                 \
    const char *names[] = {"v"};                                                                  \
    double vals[] = {1.0};                                                                        \
    (void)store, (void)restore, (void)list, (void)op, (void)s, (void)b, (void)d, (void)i64,       \
        (void)i32, (void)u32, (void)n, (void)id

#define COUNT(call) +1
enum { CONTEXT_CALL_COUNT = 0 CONTEXT_CALLS(COUNT) };

static void null_context_everywhere(void) {
    CALL_LOCALS;
#define C NULL
#define EXPECT_NULL(call) CHECK_ERR(call, DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CONTEXT_CALLS(EXPECT_NULL)
#undef C
}

static void closed_context_everywhere(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("handles"), "handles");
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_core_close(ctx));
    CALL_LOCALS;
#define C ctx
#define EXPECT_CLOSED(call) CHECK_ERR(call, DET_ERR_STATE, "closed");
    CONTEXT_CALLS(EXPECT_CLOSED)
#undef C
    CHECK_ERR(det_core_close(ctx), DET_ERR_STATE, "already closed");
}

/* The other handles: NULL, and (where they can be closed) after close. */
static void other_handles(void) {
    size_t n;
    const void *data;
    CHECK_ERR(det_bytes_list_len(NULL, &n), DET_ERR_INVALID_ARGUMENT, "list is NULL");
    CHECK_ERR(det_bytes_list_get(NULL, 0, &data, &n), DET_ERR_INVALID_ARGUMENT, "list is NULL");
    CHECK_OK(det_bytes_list_free(NULL));
    char id[DET_STORAGE_ID_LEN];
    CHECK_ERR(det_ckpt_store_path_end_mode(NULL, 0, id), DET_ERR_INVALID_ARGUMENT, "store is NULL");
    CHECK_ERR(det_searcher_op_report_completed_json(NULL, "1"), DET_ERR_INVALID_ARGUMENT, "op is NULL");
    double v = 1;
    CHECK_ERR(det_tb_writer_add_scalar(NULL, "t", 1, 1.0), DET_ERR_INVALID_ARGUMENT, "is NULL");
    CHECK_ERR(det_tb_writer_add_histogram(NULL, "t", 1, &v, 1), DET_ERR_INVALID_ARGUMENT, "is NULL");
    CHECK_ERR(det_tb_writer_flush(NULL), DET_ERR_INVALID_ARGUMENT, "is NULL");

    det_tb_writer *w = NULL;
    CHECK_OK(det_tb_writer_open(test_tmpdir("handles-tb"), &w));
    CHECK_OK(det_tb_writer_close(w));
    CHECK_ERR(det_tb_writer_add_scalar(w, "t", 1, 1.0), DET_ERR_STATE, "not open");
    CHECK_ERR(det_tb_writer_add_histogram(w, "t", 1, &v, 1), DET_ERR_STATE, "not open");
    CHECK_ERR(det_tb_writer_flush(w), DET_ERR_STATE, "not open");
    CHECK_ERR(det_tb_writer_close(w), DET_ERR_STATE, "not open");
}

/* A context using every background service off-cluster (reporter, signal watcher, asynchronous
 * uploads, TensorBoard writer and sync, profiler) leaves no thread behind once closed. */
static void close_joins_every_thread(void) {
    int before = test_thread_count();
    det_init_options o;
    const char *dir = test_tmpdir("threads");
    test_options(&o, dir, "threads");
    o.async_checkpoints = true;
    o.tensorboard_mode = DET_TENSORBOARD_MODE_AUTO;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_profiler_on(ctx, 0.1, 2));
    CHECK_OK(det_train_report_training_metrics(ctx, 1, "{\"loss\": 1.5}", NULL));
    det_ckpt_store *store = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &store));
    const char *path = NULL;
    CHECK_OK(det_ckpt_store_path(store, &path));
    char file[700];
    snprintf(file, sizeof file, "%s/w.bin", path);
    CHECK(test_write_file(file, "weights") == 0);
    char id[DET_STORAGE_ID_LEN];
    CHECK_OK(det_ckpt_store_path_end(store, id));
    bool b;
    CHECK_OK(det_should_preempt(ctx, &b));
    usleep(300000); /* let the profiler sample */
    int during = test_thread_count();
    if (during <= before) FAILF("%d threads before det_core_init, %d while the context runs", before, during);
    CHECK_OK(det_core_close(ctx));
    int after = test_thread_count();
    if (after != before) FAILF("%d threads before det_core_init, %d after det_core_close", before, after);
}

/* Every det_context function of the header is in CONTEXT_CALLS (besides init and close). */
static void list_is_complete(void) {
    CHECK(CONTEXT_CALL_COUNT == DETCORE_TEST_CONTEXT_FUNCTIONS);
    if (CONTEXT_CALL_COUNT != DETCORE_TEST_CONTEXT_FUNCTIONS)
        FAILF("CONTEXT_CALLS has %d calls, the header %d functions taking a det_context", CONTEXT_CALL_COUNT,
              DETCORE_TEST_CONTEXT_FUNCTIONS);
}

TEST_MAIN(TEST(null_context_everywhere), TEST(closed_context_everywhere), TEST(other_handles),
          TEST(list_is_complete), TEST(close_joins_every_thread))
