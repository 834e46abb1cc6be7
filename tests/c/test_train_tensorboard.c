/* The run's TensorBoard files through det_train_* (src/capi/train.rs): the folder, AUTO-mode
 * event files and their sync into the storage layout, MANUAL uploads with selector and mangler
 * callbacks; NULLs and calls after close. */
#include "check.h"

static char *tb_path(det_context *ctx) {
    char *p = NULL;
    CHECK_OK(det_train_get_tensorboard_path(ctx, &p));
    return p;
}

static void auto_mode_writes_and_syncs(void) {
    const char *dir = test_tmpdir("tbauto");
    det_init_options o;
    test_options(&o, dir, "tbrun");
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    char *p = tb_path(ctx);
    char want[2048];
    snprintf(want, sizeof want, "%s/run/tensorboard", dir);
    CHECK_STR(p, want);
    CHECK(test_exists(p));
    CHECK_OK(det_train_report_training_metrics(ctx, 10, "{\"loss\": 0.5}", "[{\"loss\": 1.0}, {\"loss\": 0.25}]"));
    CHECK_OK(det_train_report_validation_metrics(ctx, 10, "{\"loss\": NaN}"));
    const char *names[] = {"acc"};
    double vals[] = {0.75};
    CHECK_OK(det_train_report_scalars(ctx, "training", 11, names, vals, 1));
    CHECK_OK(det_train_flush_tensorboard(ctx, 30));
    CHECK(test_count_files(p, "events.out.tfevents.") == 1);
    char synced[2048];
    snprintf(synced, sizeof synced, "%s/ckpts/local/tensorboard/experiment/runs/trial/tbrun", dir);
    CHECK(test_count_files(synced, "events.out.tfevents.") == 1);
    /* AUTO mode refuses manual uploads, as Python. */
    CHECK_ERR(det_train_upload_tensorboard_files(ctx, NULL, NULL, NULL, NULL), DET_ERR_STATE,
              "upload_tensorboard_files can only be used in MANUAL mode");
    /* A file of the user's own in the folder is synced too (at close at the latest). */
    char own[2048];
    snprintf(own, sizeof own, "%s/own.trace.json", p);
    CHECK(test_write_file(own, "{\"traceEvents\": []}") == 0);
    CHECK_OK(det_core_close(ctx));
    char synced_own[4096];
    snprintf(synced_own, sizeof synced_own, "%s/own.trace.json", synced);
    char *got = test_read_file(synced_own);
    CHECK_STR(got, "{\"traceEvents\": []}");
    free(got);
    det_string_free(p);
}

static bool only_json(const char *path, void *userdata) {
    (*(int *)userdata)++;
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".json") == 0;
}

static bool add_rank(const char *path, int32_t rank, char *name, size_t name_size, void *userdata) {
    (void)userdata;
    CHECK_STR(name, path); /* pre-filled with the original name */
    snprintf(name, name_size, "r%d/%s", (int)rank, path);
    return true;
}

static bool refuse(const char *path, int32_t rank, char *name, size_t name_size, void *userdata) {
    (void)path, (void)rank, (void)name, (void)name_size, (void)userdata;
    return false;
}

static bool escape(const char *path, int32_t rank, char *name, size_t name_size, void *userdata) {
    (void)path, (void)rank, (void)userdata;
    snprintf(name, name_size, "../../outside");
    return true;
}

static bool unterminated(const char *path, int32_t rank, char *name, size_t name_size, void *userdata) {
    (void)path, (void)rank, (void)userdata;
    memset(name, 'a', name_size);
    return true;
}

static void manual_mode_uploads(void) {
    const char *dir = test_tmpdir("tbmanual");
    det_init_options o;
    test_options(&o, dir, "man");
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    char *p = tb_path(ctx);
    CHECK(test_exists(p));
    /* Nothing is written automatically. */
    CHECK_OK(det_train_report_training_metrics(ctx, 1, "{\"loss\": 1}", NULL));
    CHECK_OK(det_train_flush(ctx, 30));
    CHECK(test_count_files(p, "tfevents") == 0);
    char f1[2048], f2[2048];
    snprintf(f1, sizeof f1, "%s/prof.pt.trace.json", p);
    snprintf(f2, sizeof f2, "%s/notes.txt", p);
    CHECK(test_write_file(f1, "{}") == 0);
    CHECK(test_write_file(f2, "x") == 0);
    int calls = 0;
    CHECK_OK(det_train_upload_tensorboard_files(ctx, only_json, &calls, add_rank, NULL));
    CHECK(calls == 2);
    CHECK_OK(det_train_flush_tensorboard(ctx, 30));
    char dst[2048];
    snprintf(dst, sizeof dst, "%s/ckpts/local/tensorboard/experiment/runs/trial/man/r0/prof.pt.trace.json", dir);
    CHECK(test_exists(dst));
    snprintf(dst, sizeof dst, "%s/ckpts/local/tensorboard/experiment/runs/trial/man/r0/notes.txt", dir);
    CHECK(!test_exists(dst));
    /* No selector, no mangler: everything, under its own name. */
    CHECK_OK(det_train_upload_tensorboard_files(ctx, NULL, NULL, NULL, NULL));
    CHECK_OK(det_train_flush_tensorboard(ctx, 30));
    snprintf(dst, sizeof dst, "%s/ckpts/local/tensorboard/experiment/runs/trial/man/notes.txt", dir);
    CHECK(test_exists(dst));
    CHECK_ERR(det_train_upload_tensorboard_files(ctx, NULL, NULL, refuse, NULL), DET_ERR_INVALID_ARGUMENT,
              "mangler returned false");
    CHECK_ERR(det_train_upload_tensorboard_files(ctx, NULL, NULL, escape, NULL), DET_ERR_INVALID_ARGUMENT,
              "../../outside");
    CHECK_ERR(det_train_upload_tensorboard_files(ctx, NULL, NULL, unterminated, NULL), DET_ERR_INVALID_ARGUMENT,
              "not NUL-terminated");
    CHECK_OK(det_core_close(ctx));
    det_string_free(p);
}


static void bad_calls(void) {
    char *s;
    CHECK_ERR(det_train_get_tensorboard_path(NULL, &s), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_train_upload_tensorboard_files(NULL, NULL, NULL, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    CHECK_ERR(det_train_flush_tensorboard(NULL, 1), DET_ERR_INVALID_ARGUMENT, "ctx is NULL");
    det_init_options o;
    test_options(&o, test_tmpdir("tbbad"), "bad");
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_ERR(det_train_get_tensorboard_path(ctx, NULL), DET_ERR_INVALID_ARGUMENT,
              "det_train_get_tensorboard_path: out is NULL");
    CHECK_ERR(det_train_flush_tensorboard(ctx, 0), DET_ERR_INVALID_ARGUMENT, "timeout_seconds");
    CHECK_ERR(det_train_flush_tensorboard(ctx, -1), DET_ERR_INVALID_ARGUMENT, "timeout_seconds");
    CHECK_OK(det_core_close(ctx));
    CHECK_ERR(det_train_get_tensorboard_path(ctx, &s), DET_ERR_STATE, "closed");
    CHECK_ERR(det_train_upload_tensorboard_files(ctx, NULL, NULL, NULL, NULL), DET_ERR_STATE, "closed");
    CHECK_ERR(det_train_flush_tensorboard(ctx, 1), DET_ERR_STATE, "closed");
}


TEST_MAIN(TEST(auto_mode_writes_and_syncs), TEST(manual_mode_uploads), TEST(bad_calls))
