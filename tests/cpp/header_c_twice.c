/* detcore.h on its own, included twice: compiled as C99 and as C++17 by ctest (header_*). */
#include <detcore.h>
#include <detcore.h>

int header_user(void);
int header_user(void) {
    det_init_options o;
    det_context *ctx = NULL;
    if (det_init_options_default(&o, sizeof o) != DET_OK) return 1;
    return det_core_init(&o, &ctx) == DET_OK ? det_core_close(ctx) : 1;
}
