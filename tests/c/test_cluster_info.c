/* det_cluster_info_json (src/capi/cluster_info.rs): Determined's info files read without a
 * context, as det_core_init reads and checks them; off-cluster NULL; broken files and bad
 * arguments. */
#include "check.h"
#include "info_files.h"

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

TEST_MAIN(TEST(cluster_info_json))
