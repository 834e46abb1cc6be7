/* On-cluster parts that need no master: broken info files fail det_core_init with a message
 * naming the file and the key (nothing is sent anywhere); det_cluster_info_json reads the same
 * files without a context; the on-cluster getters refuse off-cluster contexts; the arguments of
 * det_core_alert and det_experimental_*. */
#include "check.h"

static const char BAD_UTF8[] = {(char)0xff, (char)0xfe, 'x', 0};

static const char *CLUSTER =
    "{\"master_url\": \"http://127.0.0.1:9\", \"cluster_id\": \"c\", \"agent_id\": \"a\", "
    "\"slot_ids\": [0], \"task_id\": \"t\", \"allocation_id\": \"t.1\", \"session_token\": \"s\", "
    "\"task_type\": \"TRIAL\", \"master_cert_name\": null, \"master_cert_file\": null, "
    "\"latest_checkpoint\": null}";
static const char *TRIAL =
    "{\"trial_id\": 7, \"experiment_id\": 3, \"trial_seed\": 1, \"hparams\": {}, "
    "\"config\": {\"checkpoint_storage\": {\"type\": \"directory\", \"container_path\": \"/tmp\"}}, "
    "\"steps_completed\": 0, \"trial_run_id\": 1, \"debug\": false, "
    "\"inter_node_network_interface\": null}";
static const char *RDV = "{\"container_addrs\": [\"127.0.0.1\"], \"container_rank\": 0, \"container_slot_counts\": [1]}";

static const char *info_dir(const char *cluster, const char *trial, const char *rdv) {
    const char *d = test_tmpdir("info");
    char p[700];
    snprintf(p, sizeof p, "%s/cluster.json", d);
    test_write_file(p, cluster);
    if (trial) {
        snprintf(p, sizeof p, "%s/trial.json", d);
        test_write_file(p, trial);
    }
    if (rdv) {
        snprintf(p, sizeof p, "%s/rendezvous.json", d);
        test_write_file(p, rdv);
    }
    return d;
}

/* Replace the first `from` in `s` by `to` (static buffer). */
static const char *subst(const char *s, const char *from, const char *to) {
    static char buf[4][2048];
    static int i = 0;
    char *b = buf[i++ % 4];
    const char *at = strstr(s, from);
    if (!at) {
        FAILF("subst: %s not found", from);
        return s;
    }
    snprintf(b, 2048, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return b;
}

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

static det_context *off_cluster(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("off"), "info");
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static void getters_refuse_off_cluster(void) {
    det_context *ctx = off_cluster();
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

static void alert_arguments(void) {
    det_context *ctx = off_cluster();
    /* Off-cluster the alert is logged. */
    CHECK_OK(det_core_alert(ctx, "title", "description", DET_ALERT_LEVEL_ERROR));
    CHECK_OK(det_core_alert(ctx, NULL, NULL, DET_ALERT_LEVEL_INFO));
    CHECK_OK(det_core_alert(ctx, "t", NULL, DET_ALERT_LEVEL_DEBUG));
    CHECK_OK(det_core_alert(ctx, "t", "d", DET_ALERT_LEVEL_WARN));
    CHECK_ERR(det_core_alert(ctx, "t", "d", 42), DET_ERR_INVALID_ARGUMENT, "level: unknown value 42");
    CHECK_ERR(det_core_alert(ctx, BAD_UTF8, "d", 0), DET_ERR_INVALID_ARGUMENT, "title is not valid UTF-8");
    CHECK_ERR(det_core_alert(ctx, "t", BAD_UTF8, 0), DET_ERR_INVALID_ARGUMENT, "description is not valid UTF-8");
    CHECK_ERR(det_core_alert(NULL, "t", "d", 0), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_core_alert(ctx, "t", "d", 0), DET_ERR_STATE, "closed");
}

static void cluster_info_json(void) {
    /* A trial with a debug flag and an inter-node interface. */
    const char *trial = subst(subst(TRIAL, "\"debug\": false", "\"debug\": true"),
                              "\"inter_node_network_interface\": null", "\"inter_node_network_interface\": \"ib0\"");
    const char *d = info_dir(subst(CLUSTER, "http://127.0.0.1:9", "127.0.0.1:9/"), trial, RDV);
    char *s = NULL;
    CHECK_OK(det_cluster_info_json(d, &s));
    CHECK(s != NULL);
    CHECK_CONTAINS(s, "{\"master_url\": \"http://127.0.0.1:9\", \"cluster_id\": \"c\"");
    CHECK_CONTAINS(s, "\"session_token\": \"s\", \"task_type\": \"TRIAL\", \"master_cert_name\": null");
    CHECK_CONTAINS(s, "\"debug\": true, \"inter_node_network_interface\": \"ib0\"}");
    CHECK_CONTAINS(s, "\"rendezvous\": {\"container_addrs\": [\"127.0.0.1\"], \"container_rank\": 0");
    CHECK_CONTAINS(s, "\"resources\": null}");
    det_string_free(s);
    /* NULL: $DET_CLUSTER_INFO_DIR, as det_core_init. */
    setenv("DET_CLUSTER_INFO_DIR", d, 1);
    s = NULL;
    CHECK_OK(det_cluster_info_json(NULL, &s));
    CHECK(s != NULL && strstr(s, "\"allocation_id\": \"t.1\""));
    det_string_free(s);
    /* Off-cluster: NULL, no error. */
    setenv("DET_CLUSTER_INFO_DIR", test_tmpdir("no-info"), 1);
    s = (char *)"untouched";
    CHECK_OK(det_cluster_info_json(NULL, &s));
    CHECK(s == NULL);
    unsetenv("DET_CLUSTER_INFO_DIR");
    /* Broken files, bad arguments. */
    const char *bad = info_dir(CLUSTER, subst(TRIAL, "\"debug\": false", "\"debug\": \"yes\""), RDV);
    CHECK_ERR(det_cluster_info_json(bad, &s), DET_ERR_INVALID_ARGUMENT,
              "trial.json: key \"debug\" must be true or false, got string \"yes\"");
    CHECK_ERR(det_cluster_info_json(info_dir("{", NULL, NULL), &s), DET_ERR_INVALID_ARGUMENT,
              "cluster.json: broken JSON");
    CHECK_ERR(det_cluster_info_json(info_dir(CLUSTER, NULL, RDV), &s), DET_ERR_INVALID_ARGUMENT,
              "trial.json is missing");
    CHECK_ERR(det_cluster_info_json(d, NULL), DET_ERR_INVALID_ARGUMENT, "det_cluster_info_json: out is NULL");
    CHECK_ERR(det_cluster_info_json(BAD_UTF8, &s), DET_ERR_INVALID_ARGUMENT, "info_dir is not valid UTF-8");
}

static void experimental_arguments(void) {
    det_context *ctx = off_cluster();
    /* Off-cluster there is nothing to record: a log line, DET_OK. */
    CHECK_OK(det_experimental_report_task_using_checkpoint(ctx, "6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10"));
    CHECK_OK(det_experimental_report_task_using_model_version(ctx, "6f1c0f43-5d6c-4c79-9d5e-1f8f3f8a9b10", 1, 2));
    CHECK_ERR(det_experimental_report_task_using_checkpoint(ctx, NULL), DET_ERR_INVALID_ARGUMENT,
              "checkpoint_uuid is NULL");
    CHECK_ERR(det_experimental_report_task_using_checkpoint(ctx, ""), DET_ERR_INVALID_ARGUMENT,
              "the checkpoint uuid is empty");
    CHECK_ERR(det_experimental_report_task_using_model_version(ctx, BAD_UTF8, 1, 2), DET_ERR_INVALID_ARGUMENT,
              "checkpoint_uuid is not valid UTF-8");
    CHECK_ERR(det_experimental_report_task_using_checkpoint(NULL, "x"), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_experimental_report_task_using_checkpoint(ctx, "x"), DET_ERR_STATE, "closed");
}

TEST_MAIN(TEST(bad_info_files), TEST(getters_refuse_off_cluster), TEST(alert_arguments), TEST(cluster_info_json),
          TEST(experimental_arguments))
