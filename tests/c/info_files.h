/* Determined's info files (cluster.json, trial.json, rendezvous.json) for the C tests that read
 * them without a master: valid contents, a folder holding them, and a one-edit variant. */
#ifndef DETCORE_TEST_INFO_FILES_H
#define DETCORE_TEST_INFO_FILES_H

#include "check.h"

__attribute__((unused)) static const char *CLUSTER =
    "{\"master_url\": \"http://127.0.0.1:9\", \"cluster_id\": \"c\", \"agent_id\": \"a\", "
    "\"slot_ids\": [0], \"task_id\": \"t\", \"allocation_id\": \"t.1\", \"session_token\": \"s\", "
    "\"task_type\": \"TRIAL\", \"master_cert_name\": null, \"master_cert_file\": null, "
    "\"latest_checkpoint\": null}";
__attribute__((unused)) static const char *TRIAL =
    "{\"trial_id\": 7, \"experiment_id\": 3, \"trial_seed\": 1, \"hparams\": {}, "
    "\"config\": {\"checkpoint_storage\": {\"type\": \"directory\", \"container_path\": \"/tmp\"}}, "
    "\"steps_completed\": 0, \"trial_run_id\": 1, \"debug\": false, "
    "\"inter_node_network_interface\": null}";
__attribute__((unused)) static const char *RDV = "{\"container_addrs\": [\"127.0.0.1\"], \"container_rank\": 0, \"container_slot_counts\": [1]}";

__attribute__((unused)) static const char *info_dir(const char *cluster, const char *trial, const char *rdv) {
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
__attribute__((unused)) static const char *subst(const char *s, const char *from, const char *to) {
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

#endif
