/* The searcher off-cluster: one operation of searcher_max_length, progress, completion, and the
 * errors for calls out of order. */
#include "check.h"

static void one_operation(void) {
    const char *dir = test_tmpdir("searcher");
    det_init_options o;
    test_options(&o, dir, "s");
    o.disable_signal_handlers = true;
    o.searcher_max_length = 8;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    int32_t units = -1;
    CHECK_OK(det_searcher_get_configured_units(ctx, &units));
    CHECK(units == DET_UNIT_EPOCHS);
    CHECK_OK(det_searcher_acknowledge_out_of_ops(ctx));

    det_searcher_op *op = NULL, *next = NULL;
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    CHECK(op != NULL);
    int64_t len = 0;
    CHECK_OK(det_searcher_op_length(op, &len));
    CHECK(len == 8);
    CHECK_ERR(det_searcher_next_op(ctx, DET_SEARCHER_MODE_CHIEF_ONLY, &next), DET_ERR_STATE,
              "you must call op.report_completed() on each operation");
    CHECK_OK(det_searcher_op_report_progress(op, 2));
    CHECK_OK(det_searcher_op_report_progress(op, 100)); /* clamped to 1 */
    CHECK_ERR(det_searcher_op_report_progress(op, 0.0 / 0.0), DET_ERR_INVALID_ARGUMENT, "not a finite number");
    CHECK_OK(det_searcher_op_report_completed(op, 0.25));
    CHECK_ERR(det_searcher_op_report_completed(op, 0.25), DET_ERR_STATE, "only call op.report_completed() once");
    CHECK_ERR(det_searcher_op_report_progress(op, 3), DET_ERR_STATE, "different length after op.report_completed()");
    CHECK_OK(det_searcher_op_report_progress(op, 8));
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &next));
    CHECK(next == NULL);
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &next));
    CHECK(next == NULL);
    CHECK_OK(det_searcher_op_free(op));
    CHECK_ERR(det_searcher_op_length(op, &len), DET_ERR_STATE, "not open");
    CHECK_OK(det_train_flush(ctx, 5));

    char p[800];
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", dir);
    char *text = test_read_file(p);
    CHECK_CONTAINS(text, "{\"type\": \"progress\", \"progress\": 0.25,");
    CHECK_CONTAINS(text, "{\"type\": \"progress\", \"progress\": 1.0,");
    CHECK_CONTAINS(text, "{\"type\": \"searcher_completed\", \"length\": 8, \"searcher_metric\": 0.25,");
    free(text);
    CHECK_OK(det_core_close(ctx));
}

static void length_from_environment(void) {
    det_init_options o;
    test_options(&o, test_tmpdir("searcher-env"), "s");
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    setenv("DET_MAX_LENGTH", "42", 1);
    CHECK_OK(det_core_init(&o, &ctx));
    det_searcher_op *op = NULL;
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    int64_t len = 0;
    CHECK_OK(det_searcher_op_length(op, &len));
    CHECK(len == 42);
    CHECK_OK(det_searcher_op_report_completed_json(op, "{\"val_loss\": 0.1}"));
    CHECK_ERR(det_searcher_op_report_completed_json(op, "{"), DET_ERR_INVALID_ARGUMENT, "searcher_metric_json");
    CHECK_OK(det_searcher_op_free(op));
    CHECK_OK(det_core_close(ctx));
    setenv("DET_MAX_LENGTH", "zero", 1);
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "DET_MAX_LENGTH: \"zero\" is not a positive integer");
    unsetenv("DET_MAX_LENGTH");
    /* Default: one operation of length 1, as Python's dummy searcher. */
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_searcher_next_op(ctx, DET_SEARCHER_MODE_WORKERS_ASK_CHIEF, &op));
    CHECK_OK(det_searcher_op_length(op, &len));
    CHECK(len == 1);
    CHECK_OK(det_searcher_op_free(op));
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(one_operation), TEST(length_from_environment))
