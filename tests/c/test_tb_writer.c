/* det_tb_writer_* (src/capi/tb_writer.rs): a TensorBoard event-file writer for the caller's own
 * scalars and histograms, its files synced with the run's in AUTO mode; bad arguments, NULL,
 * and calls after close. */
#include "check.h"

static char *tb_path(det_context *ctx) {
    char *p = NULL;
    CHECK_OK(det_train_get_tensorboard_path(ctx, &p));
    return p;
}

static void own_writer(void) {
    const char *dir = test_tmpdir("tbw");
    det_init_options o;
    test_options(&o, dir, "own");
    det_context *ctx;
    CHECK_OK(det_core_init(&o, &ctx));
    char *p = tb_path(ctx);
    char sub[2048];
    snprintf(sub, sizeof sub, "%s/custom", p);
    det_tb_writer *w = NULL;
    CHECK_OK(det_tb_writer_open(sub, &w));
    CHECK_OK(det_tb_writer_add_scalar(w, "my/scalar", 3, 0.5));
    double vals[] = {1.0, 2.0, 2.5, -4.0};
    CHECK_OK(det_tb_writer_add_histogram(w, "my/hist", 3, vals, 4));
    CHECK_OK(det_tb_writer_add_histogram(w, "my/empty", 4, NULL, 0));
    CHECK_ERR(det_tb_writer_add_histogram(w, "my/hist", 5, NULL, 2), DET_ERR_INVALID_ARGUMENT, "values is NULL");
    CHECK_ERR(det_tb_writer_add_scalar(w, NULL, 5, 1.0), DET_ERR_INVALID_ARGUMENT, "tag is NULL");
    CHECK_OK(det_tb_writer_flush(w));
    CHECK(test_count_files(sub, "events.out.tfevents.") == 1);
    CHECK_OK(det_tb_writer_close(w));
    CHECK_ERR(det_tb_writer_close(w), DET_ERR_STATE, "not open");
    CHECK_ERR(det_tb_writer_add_scalar(w, "x", 1, 1.0), DET_ERR_STATE, "not open");
    CHECK_OK(det_tb_writer_close(NULL));
    CHECK_ERR(det_tb_writer_flush(NULL), DET_ERR_INVALID_ARGUMENT, "writer is NULL");
    CHECK_ERR(det_tb_writer_open(NULL, &w), DET_ERR_INVALID_ARGUMENT, "dir is NULL");
    CHECK_ERR(det_tb_writer_open(sub, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    /* AUTO mode syncs the writer's files with the metrics' ones. */
    CHECK_OK(det_core_close(ctx));
    char synced[2048];
    snprintf(synced, sizeof synced, "%s/ckpts/local/tensorboard/experiment/runs/trial/own/custom", dir);
    CHECK(test_count_files(synced, "events.out.tfevents.") == 1);
    det_string_free(p);
}

TEST_MAIN(TEST(own_writer))
