/* The ABI's own rules: status names, last-error text and its copy-out form, options structs,
 * versions, NULL/bad-UTF-8/unknown-enum handling at every entry point, calls on closed handles. */
#include "check.h"

#include <signal.h>
#include <stdint.h>

static det_context *open_ctx(const char *tag) {
    det_init_options o;
    test_options(&o, test_tmpdir(tag), "abi");
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static void status_names(void) {
    CHECK_STR(det_status_name(DET_OK), "DET_OK");
    CHECK_STR(det_status_name(DET_ERR_INVALID_ARGUMENT), "DET_ERR_INVALID_ARGUMENT");
    CHECK_STR(det_status_name(DET_ERR_STATE), "DET_ERR_STATE");
    CHECK_STR(det_status_name(DET_ERR_NOT_FOUND), "DET_ERR_NOT_FOUND");
    CHECK_STR(det_status_name(DET_ERR_CONFLICT), "DET_ERR_CONFLICT");
    CHECK_STR(det_status_name(DET_ERR_UNSUPPORTED), "DET_ERR_UNSUPPORTED");
    CHECK_STR(det_status_name(DET_ERR_BUFFER_TOO_SMALL), "DET_ERR_BUFFER_TOO_SMALL");
    CHECK_STR(det_status_name(DET_ERR_IO), "DET_ERR_IO");
    CHECK_STR(det_status_name(DET_ERR_STORAGE), "DET_ERR_STORAGE");
    CHECK_STR(det_status_name(DET_ERR_MASTER), "DET_ERR_MASTER");
    CHECK_STR(det_status_name(DET_ERR_TIMEOUT), "DET_ERR_TIMEOUT");
    CHECK_STR(det_status_name(DET_ERR_DISTRIBUTED), "DET_ERR_DISTRIBUTED");
    CHECK_STR(det_status_name(DET_ERR_INTERNAL), "DET_ERR_INTERNAL");
    CHECK_STR(det_status_name(12345), "DET_UNKNOWN_STATUS");
    CHECK_STR(det_status_name(-1), "DET_UNKNOWN_STATUS");
    /* Stable values. */
    CHECK(DET_OK == 0 && DET_ERR_INVALID_ARGUMENT == 1 && DET_ERR_STATE == 2 && DET_ERR_NOT_FOUND == 3);
    CHECK(DET_ERR_IO == 10 && DET_ERR_STORAGE == 11 && DET_ERR_MASTER == 12 && DET_ERR_INTERNAL == 99);
}

static void versions(void) {
    CHECK_STR(det_version(), DET_VERSION_STRING);
    CHECK(det_version_number() == DET_VERSION_NUMBER);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", DET_VERSION_MAJOR, DET_VERSION_MINOR, DET_VERSION_PATCH);
    CHECK_STR(det_version(), buf);
}

static void last_error_forms(void) {
    CHECK_ERR(det_core_init(NULL, NULL), DET_ERR_INVALID_ARGUMENT, "det_core_init: out is NULL");
    const char *msg = det_last_error_message();
    size_t len = 0;
    char big[256], small[8];
    CHECK_OK(det_last_error_copy(big, sizeof big, &len));
    CHECK_STR(big, msg);
    CHECK(len == strlen(msg));
    CHECK_STATUS(det_last_error_copy(small, sizeof small, &len), DET_ERR_BUFFER_TOO_SMALL);
    CHECK(strlen(small) == sizeof small - 1 && strncmp(small, msg, sizeof small - 1) == 0);
    CHECK(len == strlen(msg));
    CHECK_STATUS(det_last_error_copy(NULL, 0, &len), DET_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(msg));
    /* Copying never changes the message; a success does not clear it. */
    CHECK_STR(det_last_error_message(), msg);
    CHECK_OK(det_log_set_level(DET_LOG_LEVEL_WARNING));
    CHECK_CONTAINS(det_last_error_message(), "out is NULL");
}

static void options_structs(void) {
    det_init_options o;
    CHECK_ERR(det_init_options_default(NULL, sizeof o), DET_ERR_INVALID_ARGUMENT, "opts is NULL");
    CHECK_ERR(det_init_options_default(&o, 8), DET_ERR_INVALID_ARGUMENT, "struct_size 8");
    CHECK_OK(det_init_options_default(&o, sizeof o));
    CHECK(o.struct_size == sizeof o);
    CHECK(o.checkpoint_storage == NULL && o.preempt_mode == DET_PREEMPT_MODE_WORKERS_ASK_CHIEF);
    CHECK(o.tensorboard_mode == DET_TENSORBOARD_MODE_AUTO && o.halt_margin_seconds < 0);
    /* Retention unset (keep every checkpoint) unless set here, in the storage dict or the env. */
    CHECK(o.save_trial_latest < 0 && o.save_trial_best < 0 && o.searcher_metric == NULL && o.smaller_is_better < 0);

    /* A newer program's larger struct is filled, its unknown tail zeroed. */
    struct {
        det_init_options o;
        char tail[64];
    } bigger;
    memset(&bigger, 0xAB, sizeof bigger);
    CHECK_OK(det_init_options_default(&bigger.o, sizeof bigger));
    CHECK(bigger.o.struct_size == sizeof bigger && bigger.tail[0] == 0 && bigger.tail[63] == 0);

    det_distributed_config d;
    CHECK_OK(det_distributed_config_default(&d, sizeof d));
    CHECK(d.rank == 0 && d.size == 1 && d.local_size == 1 && d.cross_size == 1);
    CHECK_ERR(det_distributed_config_default(&d, 4), DET_ERR_INVALID_ARGUMENT, "struct_size");

    /* det_core_init refuses a struct that was never initialised to a plausible size. */
    det_context *ctx = NULL;
    det_init_options bad;
    memset(&bad, 0, sizeof bad);
    CHECK_ERR(det_core_init(&bad, &ctx), DET_ERR_INVALID_ARGUMENT, "struct_size is 0");
    CHECK(ctx == NULL);
}

static void bad_options(void) {
    const char *dir = test_tmpdir("badopts");
    det_init_options o;
    det_context *ctx = NULL;

    test_options(&o, dir, "x");
    o.preempt_mode = 7;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "preempt_mode: unknown value 7");
    test_options(&o, dir, "x");
    o.tensorboard_mode = -1;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "tensorboard_mode: unknown value -1");
    test_options(&o, dir, "x");
    o.checkpoint_storage = "ftp://x";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "unknown scheme \"ftp\" in \"ftp://x\"");
    test_options(&o, dir, "x");
    o.checkpoint_storage = "{\"type\": \"directory\"";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "checkpoint_storage: malformed JSON");
    test_options(&o, dir, "x");
    o.checkpoint_storage = "{\"type\": \"shared_fs\", \"host_path\": \"/tmp\"}";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "shared_fs");
    test_options(&o, dir, "x");
    o.checkpoint_storage = BAD_UTF8;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "opts.checkpoint_storage is not valid UTF-8");
    test_options(&o, dir, "x");
    o.hparams_json = "[1, 2]";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "hparams_json: expected a JSON object, got array");
    test_options(&o, dir, "x");
    o.hparams_json = "{\"lr\": }";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "hparams_json: malformed JSON");
    test_options(&o, dir, "a/b");
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "run_name");
    test_options(&o, dir, "x");
    o.report_queue_capacity = SIZE_MAX;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "opts.report_queue_capacity");
    test_options(&o, dir, "x");
    o.close_timeout_seconds = 1e300; /* "as long as it takes": accepted, never overflows */
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_core_close(ctx));
    ctx = NULL;
    test_options(&o, dir, "x");
    o.save_trial_best = 1; /* best needs a metric */
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "save_trial_best=1 needs a metric");
    test_options(&o, dir, "x");
    o.smaller_is_better = 2;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "opts.smaller_is_better: 2 is not 0, 1");
    test_options(&o, dir, "x");
    o.searcher_metric = "";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "opts.searcher_metric is empty");
    test_options(&o, dir, "x");
    o.searcher_metric = BAD_UTF8;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "opts.searcher_metric is not valid UTF-8");
    test_options(&o, dir, "x");
    o.checkpoint_storage = "{\"type\": \"directory\", \"container_path\": \"/tmp/x\", \"save_trial_latest\": -2}";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "\"save_trial_latest\" must be an integer from 0");
    test_options(&o, dir, "x");
    o.checkpoint_storage = "{\"type\": \"directory\", \"container_path\": \"/tmp/x\", \"checksums\": \"no\"}";
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "\"checksums\" must be true or false");
    test_options(&o, dir, "x");
    o.save_trial_latest = 2; /* a valid policy */
    o.save_trial_best = 1;
    o.searcher_metric = "loss";
    o.smaller_is_better = 0;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_core_close(ctx));
    ctx = NULL;
    test_options(&o, dir, "x");
    o.searcher_max_length = -3;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "searcher_max_length");
    test_options(&o, dir, "x");
    int sigs[] = {SIGKILL};
    o.preempt_signals = sigs;
    o.preempt_signals_len = 1;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "SIGKILL cannot be caught");
    test_options(&o, dir, "x");
    o.preempt_signals_len = 2;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "preempt_signals is NULL");
    test_options(&o, dir, "x");
    det_distributed_config d;
    det_distributed_config_default(&d, sizeof d);
    d.rank = 3;
    d.size = 2;
    o.distributed = &d;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "rank 3 must be less than size 2");
    d.rank = -1;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "rank is negative");
    CHECK(ctx == NULL);

    /* On-cluster info present: this build refuses clearly. */
    char info[600], cluster[700];
    snprintf(info, sizeof info, "%s/info", dir);
    mkdir(info, 0700);
    snprintf(cluster, sizeof cluster, "%s/cluster.json", info);
    test_write_file(cluster, "{}");
    test_options(&o, dir, "x");
    o.cluster_info_dir = info;
    det_status st = det_core_init(&o, &ctx);
    CHECK(st != DET_OK);
    CHECK_CONTAINS(det_last_error_message(), "cluster.json");
}

static void null_arguments(void) {
    det_context *ctx = open_ctx("nulls");
    bool b;
    int64_t i;
    double d;
    int32_t i32;
    char *s;
    det_ckpt_store *store;
    det_ckpt_restore *restore;
    det_searcher_op *op;
    char id[DET_STORAGE_ID_LEN];
    const char *meta = "{\"steps_completed\": 1}";

    /* NULL context. */
    CHECK_ERR(det_should_preempt(NULL, &b), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_info_is_on_cluster(NULL, &b), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_train_report_training_metrics(NULL, 1, "{}", NULL), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_ckpt_store_path_begin(NULL, meta, false, &store), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_searcher_next_op(NULL, 0, &op), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_dist_rank(NULL, &i32), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_OK(det_core_close(NULL));

    /* NULL outputs. */
    CHECK_ERR(det_should_preempt(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "det_should_preempt: out is NULL");
    CHECK_ERR(det_should_preempt_ex(ctx, false, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_is_on_cluster(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_latest_checkpoint(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_steps_completed(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_hparams_json(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_get_hparam_f64(ctx, "x", NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_get_hparam_i64(ctx, "x", NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_get_hparam_str(ctx, "x", NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_run_name(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_run_dir(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_dist_size(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_preempt_seconds_remaining(ctx, NULL, &d), DET_ERR_INVALID_ARGUMENT, "known is NULL");
    CHECK_ERR(det_preempt_seconds_remaining(ctx, &b, NULL), DET_ERR_INVALID_ARGUMENT, "seconds is NULL");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, meta, false, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_ckpt_upload(ctx, "/tmp", meta, false, NULL, NULL, NULL), DET_ERR_INVALID_ARGUMENT,
              "storage_id_out is NULL");
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, "abc", 0, NULL, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_ckpt_get_metadata(ctx, "abc", NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_train_get_experiment_best_validation(ctx, NULL, &d), DET_ERR_INVALID_ARGUMENT, "found is NULL");
    CHECK_ERR(det_train_get_experiment_best_validation(ctx, &b, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_train_get_run_metadata(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_searcher_next_op(ctx, 0, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_searcher_get_configured_units(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");

    /* NULL inputs. */
    CHECK_ERR(det_info_get_hparam_f64(ctx, NULL, &d), DET_ERR_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(det_info_get_hparam_i64(ctx, NULL, &i), DET_ERR_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(det_info_get_hparam_str(ctx, NULL, &s), DET_ERR_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, NULL, false, &store), DET_ERR_INVALID_ARGUMENT, "metadata_json is NULL");
    CHECK_ERR(det_ckpt_upload(ctx, NULL, meta, false, NULL, NULL, id), DET_ERR_INVALID_ARGUMENT, "dir is NULL");
    CHECK_ERR(det_ckpt_upload(ctx, "/tmp", NULL, false, NULL, NULL, id), DET_ERR_INVALID_ARGUMENT, "metadata_json is NULL");
    CHECK_ERR(det_ckpt_download(ctx, NULL, "/tmp/x", 0, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "storage_id is NULL");
    CHECK_ERR(det_ckpt_download(ctx, "abc", NULL, 0, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "dir is NULL");
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, NULL, 0, NULL, NULL, &restore), DET_ERR_INVALID_ARGUMENT, "storage_id is NULL");
    CHECK_ERR(det_ckpt_get_metadata(ctx, NULL, &s), DET_ERR_INVALID_ARGUMENT, "storage_id is NULL");
    CHECK_ERR(det_ckpt_delete(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "storage_id is NULL");
    CHECK_ERR(det_train_report_training_metrics(ctx, 1, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "metrics_json is NULL");
    CHECK_ERR(det_train_report_validation_metrics(ctx, 1, NULL), DET_ERR_INVALID_ARGUMENT, "metrics_json is NULL");
    CHECK_ERR(det_train_report_metrics(ctx, NULL, 1, "{}"), DET_ERR_INVALID_ARGUMENT, "group is NULL");
    CHECK_ERR(det_train_report_metrics(ctx, "g", 1, NULL), DET_ERR_INVALID_ARGUMENT, "metrics_json is NULL");
    CHECK_ERR(det_train_report_scalars(ctx, NULL, 1, NULL, NULL, 0), DET_ERR_INVALID_ARGUMENT, "group is NULL");
    double v = 1.0;
    const char *names[] = {NULL};
    CHECK_ERR(det_train_report_scalars(ctx, "training", 1, NULL, &v, 1), DET_ERR_INVALID_ARGUMENT, "names is NULL");
    CHECK_ERR(det_train_report_scalars(ctx, "training", 1, names, NULL, 1), DET_ERR_INVALID_ARGUMENT, "values is NULL");
    CHECK_ERR(det_train_report_scalars(ctx, "training", 1, names, &v, 1), DET_ERR_INVALID_ARGUMENT, "names[0] is NULL");
    CHECK_ERR(det_train_set_status(ctx, NULL), DET_ERR_INVALID_ARGUMENT, "status is NULL");
    CHECK_ERR(det_train_set_run_metadata(ctx, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "metadata_json is NULL");

    /* NULL short-lived handles. */
    const char *p;
    CHECK_ERR(det_ckpt_store_path(NULL, &p), DET_ERR_INVALID_ARGUMENT, "store is NULL");
    CHECK_ERR(det_ckpt_store_storage_id(NULL, &p), DET_ERR_INVALID_ARGUMENT, "store is NULL");
    CHECK_ERR(det_ckpt_store_path_end(NULL, id), DET_ERR_INVALID_ARGUMENT, "store is NULL");
    CHECK_OK(det_ckpt_store_path_abort(NULL));
    CHECK_ERR(det_ckpt_restore_path(NULL, &p), DET_ERR_INVALID_ARGUMENT, "restore is NULL");
    CHECK_ERR(det_ckpt_restore_path_end(NULL), DET_ERR_INVALID_ARGUMENT, "restore is NULL");
    CHECK_ERR(det_searcher_op_length(NULL, &i), DET_ERR_INVALID_ARGUMENT, "op is NULL");
    CHECK_ERR(det_searcher_op_report_progress(NULL, 1), DET_ERR_INVALID_ARGUMENT, "op is NULL");
    CHECK_ERR(det_searcher_op_report_completed(NULL, 1), DET_ERR_INVALID_ARGUMENT, "op is NULL");
    CHECK_OK(det_searcher_op_free(NULL));
    det_string_free(NULL);

    /* A stray pointer that was never a handle is refused, not dereferenced. */
    CHECK_ERR(det_ckpt_store_path((det_ckpt_store *)(uintptr_t)0x12345670, &p), DET_ERR_STATE, "not open");
    CHECK_ERR(det_ckpt_restore_path_end((det_ckpt_restore *)(uintptr_t)0x7770), DET_ERR_STATE, "not open");
    CHECK_OK(det_core_close(ctx));
}

static void invalid_utf8_and_json(void) {
    det_context *ctx = open_ctx("utf8");
    det_ckpt_store *store;
    double d;
    char id[DET_STORAGE_ID_LEN];
    CHECK_ERR(det_info_get_hparam_f64(ctx, BAD_UTF8, &d), DET_ERR_INVALID_ARGUMENT, "name is not valid UTF-8");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, BAD_UTF8, false, &store), DET_ERR_INVALID_ARGUMENT,
              "metadata_json is not valid UTF-8");
    CHECK_ERR(det_ckpt_delete(ctx, BAD_UTF8), DET_ERR_INVALID_ARGUMENT, "storage_id is not valid UTF-8");
    CHECK_ERR(det_train_report_metrics(ctx, BAD_UTF8, 1, "{}"), DET_ERR_INVALID_ARGUMENT, "group is not valid UTF-8");
    CHECK_ERR(det_train_set_status(ctx, BAD_UTF8), DET_ERR_INVALID_ARGUMENT, "status is not valid UTF-8");
    const char *names[] = {"ok", BAD_UTF8};
    double vals[] = {1, 2};
    CHECK_ERR(det_train_report_scalars(ctx, "training", 1, names, vals, 2), DET_ERR_INVALID_ARGUMENT,
              "names[1] is not valid UTF-8");

    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1", false, &store), DET_ERR_INVALID_ARGUMENT,
              "metadata_json: malformed JSON");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "[]", false, &store), DET_ERR_INVALID_ARGUMENT, "expected a JSON object");
    CHECK_ERR(det_ckpt_upload(ctx, "/tmp", "nope", false, NULL, NULL, id), DET_ERR_INVALID_ARGUMENT, "malformed JSON");
    CHECK_ERR(det_train_report_training_metrics(ctx, 1, "{\"a\": 1,}", NULL), DET_ERR_INVALID_ARGUMENT,
              "metrics_json: malformed JSON: expected a string key at line 1, column 9");
    CHECK_ERR(det_train_report_training_metrics(ctx, 1, "{}", "{}"), DET_ERR_INVALID_ARGUMENT,
              "batch_metrics_json: expected a JSON array of objects");
    CHECK_ERR(det_train_report_training_metrics(ctx, 1, "{}", "[1]"), DET_ERR_INVALID_ARGUMENT,
              "batch_metrics_json[0]: expected a JSON object");
    CHECK_ERR(det_train_report_validation_metrics(ctx, 1, "\"x\""), DET_ERR_INVALID_ARGUMENT, "expected a JSON object");
    CHECK_ERR(det_train_set_run_metadata(ctx, "{", NULL), DET_ERR_INVALID_ARGUMENT, "malformed JSON");
    CHECK_OK(det_core_close(ctx));
}

static void unknown_enums(void) {
    det_context *ctx = open_ctx("enums");
    det_searcher_op *op;
    det_ckpt_restore *r;
    CHECK_ERR(det_searcher_next_op(ctx, 5, &op), DET_ERR_INVALID_ARGUMENT, "searcher_mode: unknown value 5");
    CHECK_ERR(det_ckpt_download(ctx, "abc", "/tmp/x", 9, NULL, NULL), DET_ERR_INVALID_ARGUMENT,
              "download_mode: unknown value 9");
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, "abc", -2, NULL, NULL, &r), DET_ERR_INVALID_ARGUMENT,
              "download_mode: unknown value -2");
    CHECK_ERR(det_train_report_early_exit(ctx, 42), DET_ERR_INVALID_ARGUMENT, "reason: unknown value 42");
    CHECK_ERR(det_log_set_level(3), DET_ERR_INVALID_ARGUMENT, "level: unknown value 3");
    CHECK_OK(det_core_close(ctx));
}

static void use_after_close(void) {
    det_context *ctx = open_ctx("closed");
    det_ckpt_store *store = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 3}", false, &store));
    det_searcher_op *op = NULL;
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    CHECK_OK(det_core_close(ctx));

    bool b;
    char *s;
    CHECK_ERR(det_should_preempt(ctx, &b), DET_ERR_STATE, "closed by det_core_close");
    CHECK_ERR(det_train_report_training_metrics(ctx, 1, "{}", NULL), DET_ERR_STATE, "closed");
    CHECK_ERR(det_info_hparams_json(ctx, &s), DET_ERR_STATE, "closed");
    CHECK_ERR(det_ckpt_wait(ctx), DET_ERR_STATE, "closed");
    CHECK_ERR(det_preempt_acknowledge(ctx), DET_ERR_STATE, "closed");
    CHECK_ERR(det_core_close(ctx), DET_ERR_STATE, "already closed");
    /* Handles of a closed context. */
    char id[DET_STORAGE_ID_LEN];
    CHECK_ERR(det_ckpt_store_path_end(store, id), DET_ERR_STATE, "closed");
    CHECK_ERR(det_ckpt_store_path_end(store, id), DET_ERR_STATE, "not open");
    CHECK_ERR(det_searcher_op_report_progress(op, 1), DET_ERR_STATE, "closed");
    CHECK_OK(det_searcher_op_free(op));
    CHECK_ERR(det_searcher_op_free(op), DET_ERR_STATE, "not open");
}

static void strings_are_owned(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("strings"), "owned");
    o.hparams_json = "{\"lr\": 0.5, \"name\": \"mlp\", \"n\": 4}";
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    char *h = NULL, *name = NULL, *run = NULL, *dir = NULL;
    CHECK_OK(det_info_hparams_json(ctx, &h));
    CHECK_STR(h, "{\"lr\": 0.5, \"name\": \"mlp\", \"n\": 4}");
    CHECK_OK(det_info_get_hparam_str(ctx, "name", &name));
    CHECK_STR(name, "mlp");
    CHECK_OK(det_info_run_name(ctx, &run));
    CHECK_STR(run, "owned");
    CHECK_OK(det_info_run_dir(ctx, &dir));
    CHECK(dir && dir[0] == '/');
    det_string_free(h);
    det_string_free(name);
    det_string_free(run);
    det_string_free(dir);
    double lr;
    int64_t n;
    CHECK_OK(det_info_get_hparam_f64(ctx, "lr", &lr));
    CHECK(lr == 0.5);
    CHECK_OK(det_info_get_hparam_i64(ctx, "n", &n));
    CHECK(n == 4);
    CHECK_ERR(det_info_get_hparam_i64(ctx, "lr", &n), DET_ERR_INVALID_ARGUMENT, "hparam \"lr\" is number 0.5, not an integer");
    CHECK_ERR(det_info_get_hparam_f64(ctx, "missing", &lr), DET_ERR_NOT_FOUND, "hparam \"missing\" not found");
    bool on;
    CHECK_OK(det_info_is_on_cluster(ctx, &on));
    CHECK(!on);
    int32_t r, sz;
    CHECK_OK(det_dist_rank(ctx, &r));
    CHECK_OK(det_dist_size(ctx, &sz));
    CHECK(r == 0 && sz == 1);
    CHECK_OK(det_core_close(ctx));
}

/* Hyperparameters a C string or an int64_t cannot hold: a clear error (never DET_ERR_INTERNAL),
 * while the JSON form keeps them exactly (integers of any size, NUL escaped). Lone surrogates
 * become U+FFFD. */
static void odd_hyperparameters(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("oddhp"), "oddhp");
    o.hparams_json = "{\"nul\": \"a\\u0000b\", \"big\": 18446744073709551616, "
                     "\"neg\": -123456789012345678901234567890, \"lone\": \"x\\ud800y\"}";
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    char *s = NULL;
    CHECK_ERR(det_info_get_hparam_str(ctx, "nul", &s), DET_ERR_INVALID_ARGUMENT, "NUL character");
    CHECK(s == NULL);
    int64_t n = 7;
    CHECK_ERR(det_info_get_hparam_i64(ctx, "big", &n), DET_ERR_INVALID_ARGUMENT,
              "the integer 18446744073709551616, outside the range of a 64-bit integer");
    CHECK(n == 7);
    double d = 0;
    CHECK_OK(det_info_get_hparam_f64(ctx, "big", &d));
    CHECK(d == 18446744073709551616.0);
    CHECK_OK(det_info_hparams_json(ctx, &s));
    CHECK_STR(s, "{\"nul\": \"a\\u0000b\", \"big\": 18446744073709551616, "
                 "\"neg\": -123456789012345678901234567890, \"lone\": \"x\\ufffdy\"}");
    det_string_free(s);
    s = NULL;
    CHECK_OK(det_info_get_hparam_str(ctx, "lone", &s));
    CHECK_STR(s, "x\xef\xbf\xbdy");
    det_string_free(s);
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(status_names), TEST(versions), TEST(last_error_forms), TEST(options_structs), TEST(bad_options),
          TEST(null_arguments), TEST(invalid_utf8_and_json), TEST(unknown_enums), TEST(use_after_close),
          TEST(strings_are_owned), TEST(odd_hyperparameters))
