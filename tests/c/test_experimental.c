/* det_experimental_* (src/capi/experimental.rs): off-cluster there is nothing to record (a log
 * line, DET_OK); bad checkpoint ids, NULL and a closed context. */
#include "check.h"

static void experimental_arguments(void) {
    det_context *ctx = test_off_cluster("off", "info");
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

TEST_MAIN(TEST(experimental_arguments))
