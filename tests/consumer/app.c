/* Uses the installed C API: open an off-cluster context, store a checkpoint, close. */
#include <detcore.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char storage[1024];
    snprintf(storage, sizeof storage, "%s/c", argv[1]);
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    o.checkpoint_storage = storage;
    o.run_dir = argv[1];
    o.cluster_info_dir = "/nonexistent";
    det_context *ctx;
    det_ckpt_store *s;
    char id[DET_STORAGE_ID_LEN];
    if (det_core_init(&o, &ctx) != DET_OK || det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s) != DET_OK ||
        det_ckpt_store_path_end(s, id) != DET_OK || det_core_close(ctx) != DET_OK) {
        fprintf(stderr, "consumer_c: %s\n", det_last_error_message());
        return 1;
    }
    printf("consumer_c ok %s %s\n", det_version(), id);
    return 0;
}
