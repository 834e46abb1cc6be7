/* det_info_* (src/capi/info.rs), the on-cluster parts that need no master: broken info files
 * fail det_core_init with a message naming the file and the key (nothing is sent anywhere); the
 * on-cluster getters refuse off-cluster contexts. */
#include "check.h"
#include "info_files.h"

static void expect_init_error(const char *dir, det_status want, const char *file, const char *needle) {
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.cluster_info_dir = dir;
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    CHECK_ERR(det_core_init(&o, &ctx), want, needle);
    CHECK(ctx == NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (file[0]) CHECK_CONTAINS(det_last_error_message(), path);
}

static void bad_info_files(void) {
    setenv("DET_SESSION_TOKEN", "tok-1234", 1);
    setenv("DET_USER", "u", 1);
    /* missing key */
    expect_init_error(info_dir(subst(CLUSTER, "\"allocation_id\": \"t.1\", ", ""), TRIAL, RDV),
                      DET_ERR_INVALID_ARGUMENT, "cluster.json", "cluster.json: required key \"allocation_id\" is missing");
    /* wrong type */
    expect_init_error(info_dir(CLUSTER, subst(TRIAL, "\"trial_run_id\": 1", "\"trial_run_id\": \"3\""), RDV),
                      DET_ERR_INVALID_ARGUMENT, "trial.json",
                      "trial.json: key \"trial_run_id\" must be an integer, got string \"3\"");
    expect_init_error(info_dir(CLUSTER, subst(TRIAL, "\"hparams\": {}", "\"hparams\": []"), RDV),
                      DET_ERR_INVALID_ARGUMENT, "trial.json", "key \"hparams\" must be an object, got array");
    expect_init_error(info_dir(subst(CLUSTER, "\"slot_ids\": [0]", "\"slot_ids\": [\"0\"]"), TRIAL, RDV),
                      DET_ERR_INVALID_ARGUMENT, "cluster.json", "key \"slot_ids\" must be a list of integers");
    expect_init_error(info_dir(CLUSTER, TRIAL, subst(RDV, "\"container_rank\": 0", "\"container_rank\": 2")),
                      DET_ERR_INVALID_ARGUMENT, "rendezvous.json", "do not fit together");
    /* broken JSON */
    expect_init_error(info_dir(CLUSTER, "{\"trial_id\": 7,", RDV), DET_ERR_INVALID_ARGUMENT, "trial.json",
                      "trial.json: broken JSON");
    expect_init_error(info_dir("[1, 2]", TRIAL, RDV), DET_ERR_INVALID_ARGUMENT, "cluster.json",
                      "expected a JSON object, got array");
    /* missing companion file */
    expect_init_error(info_dir(CLUSTER, NULL, RDV), DET_ERR_INVALID_ARGUMENT, "",
                      "trial.json is missing, but cluster.json says task_type \"TRIAL\"");
    /* bad values */
    expect_init_error(info_dir(subst(CLUSTER, "http://127.0.0.1:9", "http://u:p@host:9"), TRIAL, RDV),
                      DET_ERR_INVALID_ARGUMENT, "cluster.json", "master_url: invalid master url");
    expect_init_error(info_dir(CLUSTER, subst(TRIAL, "\"config\": {", "\"config\": {\"searcher\": {\"max_length\": \"x\"}, "), RDV),
                      DET_ERR_INVALID_ARGUMENT, "", "searcher.max_length must be a positive integer");
    /* session variables, checked before any network use */
    unsetenv("DET_SESSION_TOKEN");
    expect_init_error(info_dir(CLUSTER, TRIAL, RDV), DET_ERR_INVALID_ARGUMENT, "",
                      "DET_SESSION_TOKEN environment variable not set.");
    setenv("DET_SESSION_TOKEN", "tok-1234", 1);
    /* the master is unreachable: init fails at POST /api/v1/runs/start, after the retries */
    setenv("DET_RETRY_CONFIG", "{\"total\": 0}", 1);
    expect_init_error(info_dir(CLUSTER, TRIAL, RDV), DET_ERR_MASTER, "",
                      "POST /api/v1/runs/start: cannot reach the master at http://127.0.0.1:9");
    unsetenv("DET_RETRY_CONFIG");
    unsetenv("DET_SESSION_TOKEN");
    unsetenv("DET_USER");
}


static void getters_refuse_off_cluster(void) {
    det_context *ctx = test_off_cluster("off", "info");
    int64_t i64;
    uint32_t u32;
    int32_t i32;
    size_t n;
    char *s = NULL;
    CHECK_ERR(det_info_trial_id(ctx, &i64), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_experiment_id(ctx, &i64), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_trial_run_id(ctx, &i64), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_trial_seed(ctx, &u32), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_experiment_config_json(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_user_data_json(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_task_type(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_task_id(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_allocation_id(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_cluster_id(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_agent_id(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_master_url(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_container_count(ctx, &n), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_container_addr(ctx, 0, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_container_slot_count(ctx, 0, &i32), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_container_rank(ctx, &i32), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_slot_id_count(ctx, &n), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_slot_id(ctx, 0, &i32), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_gpu_uuid_count(ctx, &n), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_gpu_uuid(ctx, 0, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    bool b;
    CHECK_ERR(det_info_trial_debug(ctx, &b), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_inter_node_network_interface(ctx, &s), DET_ERR_UNSUPPORTED, "only known on-cluster");
    CHECK_ERR(det_info_trial_debug(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "det_info_trial_debug: out is NULL");
    CHECK_ERR(det_info_inter_node_network_interface(NULL, &s), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_info_trial_id(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "det_info_trial_id: out is NULL");
    CHECK_ERR(det_info_trial_id(NULL, &i64), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_info_task_id(ctx, &s), DET_ERR_STATE, "closed");
}




TEST_MAIN(TEST(bad_info_files), TEST(getters_refuse_off_cluster))
