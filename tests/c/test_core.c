/* det_core_alert (src/capi/core.rs): off-cluster the alert is logged; unknown levels, invalid
 * UTF-8, NULL and a closed context. (det_core_init and det_core_close are exercised by every
 * test; their options and errors by test_abi.c and test_handle.c.) */
#include "check.h"

static void alert_arguments(void) {
    det_context *ctx = test_off_cluster("off", "info");
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

TEST_MAIN(TEST(alert_arguments))
