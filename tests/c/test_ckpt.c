/* Checkpoints in a directory, through the C ABI: store/restore scopes, upload/download with
 * selectors, metadata, delete, the run index (resume), and every way a call can go wrong. */
#include "check.h"

#include <dirent.h>
#include <sys/mount.h>

static det_context *open_in(const char *dir, const char *run) {
    det_init_options o;
    test_options(&o, dir, run);
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static void write_in(const char *dir, const char *rel, const char *content) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    if (test_write_file(p, content) != 0) FAILF("cannot write %s", p);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

static void store_and_restore(void) {
    const char *dir = test_tmpdir("store");
    det_context *ctx = open_in(dir, "run1");
    char *latest = (char *)1;
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);

    det_ckpt_store *s = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 10, \"loss\": NaN, \"tag\": \"é\"}", false, &s));
    const char *path = NULL, *sid = NULL;
    CHECK_OK(det_ckpt_store_path(s, &path));
    CHECK_OK(det_ckpt_store_storage_id(s, &sid));
    CHECK(path && sid && strlen(sid) == 36);
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/sub", path);
    mkdir(sub, 0755);
    write_in(path, "model.bin", "weights");
    write_in(path, "sub/opt.bin", "momentum");

    /* Not visible as a checkpoint before _end. */
    char final_dir[1024];
    snprintf(final_dir, sizeof final_dir, "%s/ckpts/%s", dir, sid);
    CHECK(!test_exists(final_dir));
    char id[DET_STORAGE_ID_LEN];
    char expected[DET_STORAGE_ID_LEN];
    snprintf(expected, sizeof expected, "%s", sid);
    CHECK_OK(det_ckpt_store_path_end(s, id));
    CHECK_STR(id, expected);
    CHECK(test_exists(final_dir));

    /* metadata.json exactly as Python's json.dump(indent=2) writes it. */
    char meta_path[1200];
    snprintf(meta_path, sizeof meta_path, "%s/metadata.json", final_dir);
    char *meta = test_read_file(meta_path);
    CHECK_STR(meta, "{\n  \"steps_completed\": 10,\n  \"loss\": NaN,\n  \"tag\": \"\\u00e9\"\n}");
    free(meta);

    /* _end twice and the scope's getters after it are refused. */
    CHECK_ERR(det_ckpt_store_path_end(s, id), DET_ERR_STATE, "not open");
    CHECK_ERR(det_ckpt_store_path(s, &path), DET_ERR_STATE, "not open");
    CHECK_ERR(det_ckpt_store_path_abort(s), DET_ERR_STATE, "not open");

    /* get_metadata works off-cluster; NaN comes back as Determined sends it. */
    char *m = NULL;
    CHECK_OK(det_ckpt_get_metadata(ctx, id, &m));
    CHECK_STR(m, "{\"steps_completed\": 10, \"loss\": \"NaN\", \"tag\": \"\\u00e9\"}");
    det_string_free(m);

    /* restore_path yields the checkpoint in place. */
    det_ckpt_restore *r = NULL;
    CHECK_OK(det_ckpt_restore_path_begin(ctx, id, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL, &r));
    const char *rp = NULL;
    CHECK_OK(det_ckpt_restore_path(r, &rp));
    char p2[1200];
    snprintf(p2, sizeof p2, "%s/sub/opt.bin", rp);
    char *c = test_read_file(p2);
    CHECK_STR(c, "momentum");
    free(c);
    CHECK_OK(det_ckpt_restore_path_end(r));
    CHECK_ERR(det_ckpt_restore_path_end(r), DET_ERR_STATE, "not open");
    CHECK(test_exists(final_dir)); /* in-place restores are not deleted */
    CHECK_OK(det_core_close(ctx));

    /* A new context of the same run resumes from it; another run starts fresh. */
    ctx = open_in(dir, "run1");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, id);
    det_string_free(latest);
    int64_t steps = -1;
    CHECK_OK(det_info_steps_completed(ctx, &steps));
    CHECK(steps == 10);
    CHECK_OK(det_core_close(ctx));
    ctx = open_in(dir, "other-run");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);
    CHECK_OK(det_info_steps_completed(ctx, &steps));
    CHECK(steps == 0);
    CHECK_OK(det_core_close(ctx));
}

static void abort_leaves_nothing(void) {
    const char *dir = test_tmpdir("abort");
    det_context *ctx = open_in(dir, "r");
    det_ckpt_store *s = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s));
    const char *path;
    CHECK_OK(det_ckpt_store_path(s, &path));
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", path);
    write_in(path, "half.bin", "half-written");
    CHECK_OK(det_ckpt_store_path_abort(s));
    CHECK(!test_exists(keep));
    CHECK_ERR(det_ckpt_store_path_end(s, NULL), DET_ERR_STATE, "not open");
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpts", dir);
    CHECK(count_entries(ck) == 0);
    char *latest = NULL;
    CHECK_OK(det_core_close(ctx));
    ctx = open_in(dir, "r");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);
    CHECK_OK(det_core_close(ctx));
}

/* A scope still open at det_core_close is aborted by close: its folder goes, nothing is stored,
 * and the handle can still be aborted (DET_OK) or ended (a clear DET_ERR_STATE). It used to stay,
 * with its folder, and neither call could get rid of it. */
static void close_aborts_open_scopes(void) {
    const char *dir = test_tmpdir("openclose");
    det_context *ctx = open_in(dir, "r");
    det_ckpt_store *s = NULL, *s2 = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s));
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 2}", false, &s2));
    const char *path;
    CHECK_OK(det_ckpt_store_path(s, &path));
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", path);
    write_in(path, "w.bin", "half-written");
    CHECK_OK(det_core_close(ctx));
    CHECK(!test_exists(keep));
    CHECK_ERR(det_ckpt_store_path(s, &path), DET_ERR_STATE, "aborted when its context was closed");
    CHECK_ERR(det_ckpt_store_path_end(s, NULL), DET_ERR_STATE, "aborted when its context was closed");
    CHECK_OK(det_ckpt_store_path_abort(s2));
    CHECK_ERR(det_ckpt_store_path_abort(s2), DET_ERR_STATE, "not open");
    char staging[800];
    snprintf(staging, sizeof staging, "%s/ckpts/.detcore-staging", dir);
    CHECK(count_entries(staging) <= 0); /* empty, or removed with its last folder */
    /* Nothing was stored. */
    char *latest = NULL;
    ctx = open_in(dir, "r");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);
    CHECK_OK(det_core_close(ctx));
}

static void metadata_is_checked_first(void) {
    const char *dir = test_tmpdir("meta");
    det_context *ctx = open_in(dir, "r");
    det_ckpt_store *s = NULL;
    char id[DET_STORAGE_ID_LEN];
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{}", false, &s), DET_ERR_INVALID_ARGUMENT,
              "must hold an integer \"steps_completed\"");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1.5}", false, &s), DET_ERR_INVALID_ARGUMENT,
              "\"steps_completed\" must be an integer, got number 1.5");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": \"3\"}", false, &s), DET_ERR_INVALID_ARGUMENT,
              "got string \"3\"");
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": -1}", false, &s), DET_ERR_INVALID_ARGUMENT,
              "between 0 and 2147483647");
    CHECK_ERR(det_ckpt_upload(ctx, dir, "{\"other\": 1}", false, NULL, NULL, id), DET_ERR_INVALID_ARGUMENT,
              "steps_completed");
    char ck[700];
    snprintf(ck, sizeof ck, "%s/ckpts", dir);
    CHECK(count_entries(ck) <= 0); /* nothing was written */
    CHECK_OK(det_core_close(ctx));
}

static bool only_weights(const char *path, void *userdata) {
    int *calls = userdata;
    (*calls)++;
    return strncmp(path, "weights", 7) == 0;
}

static bool only_b(const char *path, void *userdata) {
    (void)userdata;
    return strcmp(path, "b/") == 0 || strcmp(path, "b/x") == 0;
}

static void upload_and_download(void) {
    const char *dir = test_tmpdir("upload");
    det_context *ctx = open_in(dir, "r");
    char src[700];
    snprintf(src, sizeof src, "%s/src", dir);
    mkdir(src, 0755);
    char wd[800], bd[800];
    snprintf(wd, sizeof wd, "%s/weights", src);
    snprintf(bd, sizeof bd, "%s/b", src);
    mkdir(wd, 0755);
    mkdir(bd, 0755);
    write_in(src, "weights/w0", "0000");
    write_in(src, "b/x", "xx");
    write_in(src, "skip.txt", "no");

    char id[DET_STORAGE_ID_LEN];
    int calls = 0;
    CHECK_OK(det_ckpt_upload(ctx, src, "{\"steps_completed\": 4}", false, only_weights, &calls, id));
    CHECK(calls >= 3);
    /* The caller's folder is never written into (Python writes metadata.json there). */
    char m[800];
    snprintf(m, sizeof m, "%s/metadata.json", src);
    CHECK(!test_exists(m));
    char got[1200];
    snprintf(got, sizeof got, "%s/ckpts/%s/weights/w0", dir, id);
    CHECK(test_exists(got));
    snprintf(got, sizeof got, "%s/ckpts/%s/skip.txt", dir, id);
    CHECK(!test_exists(got));
    snprintf(got, sizeof got, "%s/ckpts/%s/metadata.json", dir, id);
    CHECK(test_exists(got));

    /* Full upload, then selective download. */
    CHECK_OK(det_ckpt_upload(ctx, src, "{\"steps_completed\": 5}", false, NULL, NULL, id));
    char dst[700];
    snprintf(dst, sizeof dst, "%s/dl", dir);
    CHECK_OK(det_ckpt_download(ctx, id, dst, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, only_b, NULL));
    snprintf(got, sizeof got, "%s/b/x", dst);
    char *x = test_read_file(got);
    CHECK_STR(x, "xx");
    free(x);
    snprintf(got, sizeof got, "%s/weights", dst);
    CHECK(!test_exists(got));
    snprintf(got, sizeof got, "%s/metadata.json", dst);
    CHECK(!test_exists(got));

    /* Errors: missing checkpoint, bad ids, missing source folder. */
    CHECK_ERR(det_ckpt_download(ctx, "00000000-0000-4000-8000-000000000000", dst, 0, NULL, NULL), DET_ERR_NOT_FOUND,
              "checkpoint 00000000-0000-4000-8000-000000000000 not found");
    det_ckpt_restore *r;
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, "../../etc", 0, NULL, NULL, &r), DET_ERR_INVALID_ARGUMENT,
              "not a valid checkpoint id");
    CHECK_ERR(det_ckpt_download(ctx, "a/b", dst, 0, NULL, NULL), DET_ERR_INVALID_ARGUMENT, "not a valid checkpoint id");
    char *meta;
    CHECK_ERR(det_ckpt_get_metadata(ctx, "00000000-0000-4000-8000-000000000001", &meta), DET_ERR_NOT_FOUND, "not found");
    char missing[800];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    CHECK_ERR(det_ckpt_upload(ctx, missing, "{\"steps_completed\": 1}", false, NULL, NULL, id), DET_ERR_IO,
              "upload: ckpt_dir");
    CHECK_OK(det_core_close(ctx));
}

static void delete_updates_resume_point(void) {
    const char *dir = test_tmpdir("delete");
    det_context *ctx = open_in(dir, "r");
    char src[700];
    snprintf(src, sizeof src, "%s/src", dir);
    mkdir(src, 0755);
    write_in(src, "f", "1");
    char a[DET_STORAGE_ID_LEN], b[DET_STORAGE_ID_LEN];
    CHECK_OK(det_ckpt_upload(ctx, src, "{\"steps_completed\": 1}", false, NULL, NULL, a));
    CHECK_OK(det_ckpt_upload(ctx, src, "{\"steps_completed\": 2}", false, NULL, NULL, b));
    CHECK_OK(det_core_close(ctx));

    ctx = open_in(dir, "r");
    char *latest = NULL;
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, b);
    det_string_free(latest);
    CHECK_OK(det_ckpt_delete(ctx, b));
    char gone[900];
    snprintf(gone, sizeof gone, "%s/ckpts/%s", dir, b);
    CHECK(!test_exists(gone));
    CHECK_OK(det_ckpt_delete(ctx, b)); /* deleting again is not an error */
    CHECK_OK(det_core_close(ctx));

    ctx = open_in(dir, "r");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, a);
    det_string_free(latest);
    CHECK_OK(det_core_close(ctx));

    /* A checkpoint removed behind detcore's back is skipped when resuming. */
    char rm[1000];
    snprintf(rm, sizeof rm, "rm -rf %s/ckpts/%s", dir, a);
    CHECK(system(rm) == 0);
    ctx = open_in(dir, "r");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);
    CHECK_OK(det_core_close(ctx));
}

static void unusable_storage(void) {
    const char *dir = test_tmpdir("badstore");
    det_init_options o;
    test_options(&o, dir, "r");
    o.disable_signal_handlers = true;
    /* A folder that cannot be created (under /proc, even for root). */
    o.checkpoint_storage = "/proc/detcore-cannot-exist/ckpts";
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    det_ckpt_store *s = NULL;
    CHECK_ERR(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s), DET_ERR_STORAGE,
              "/proc/detcore-cannot-exist");
    CHECK(s == NULL);
    det_ckpt_restore *r = NULL;
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, "00000000-0000-4000-8000-000000000000", 0, NULL, NULL, &r),
              DET_ERR_NOT_FOUND, "checkpoint storage folder does not exist");
    CHECK_OK(det_core_close(ctx));

    /* Storage that is a file, not a folder. */
    char file[700];
    snprintf(file, sizeof file, "%s/afile", dir);
    test_write_file(file, "x");
    test_options(&o, dir, "r2");
    o.disable_signal_handlers = true;
    o.checkpoint_storage = file;
    ctx = NULL;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_STORAGE, "afile");
    CHECK(ctx == NULL);
}

static void full_disk(void) {
    /* A 64 KiB tmpfs as the storage: filling it must fail the checkpoint cleanly. */
    const char *dir = test_tmpdir("full");
    char mnt[700];
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        fprintf(stderr, "skip full_disk: cannot mount a tmpfs here (%s)\n", strerror(errno));
        return;
    }
    det_init_options o;
    test_options(&o, dir, "r");
    o.disable_signal_handlers = true;
    o.checkpoint_storage = mnt;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    det_ckpt_store *s = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 1}", false, &s));
    const char *path;
    CHECK_OK(det_ckpt_store_path(s, &path));
    /* Fill the disk completely, as a training program's checkpoint writer would. */
    char big[900];
    snprintf(big, sizeof big, "%s/big.bin", path);
    FILE *f = fopen(big, "wb");
    char block[4096];
    memset(block, 7, sizeof block);
    while (f && fwrite(block, 1, sizeof block, f) == sizeof block) {
    }
    if (f) fclose(f);
    char id[DET_STORAGE_ID_LEN];
    det_status st = det_ckpt_store_path_end(s, id);
    CHECK(st == DET_ERR_IO || st == DET_ERR_STORAGE);
    CHECK_CONTAINS(det_last_error_message(), "was not stored");
    /* Nothing looks like a checkpoint, and the staging area was cleaned up. */
    CHECK(count_entries(mnt) == 0);
    char *latest = NULL;
    CHECK_OK(det_core_close(ctx));
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest == NULL);
    CHECK_OK(det_core_close(ctx));
    umount(mnt);
}

static void directory_dict_form(void) {
    const char *dir = test_tmpdir("dict");
    char cfg[800];
    snprintf(cfg, sizeof cfg, "{\"type\": \"directory\", \"container_path\": \"%s/store\"}", dir);
    det_init_options o;
    test_options(&o, dir, "r");
    o.disable_signal_handlers = true;
    o.checkpoint_storage = cfg;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    det_ckpt_store *s;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 2}", false, &s));
    char id[DET_STORAGE_ID_LEN];
    CHECK_OK(det_ckpt_store_path_end(s, id));
    char p[1000];
    snprintf(p, sizeof p, "%s/store/%s/metadata.json", dir, id);
    CHECK(test_exists(p));
    CHECK_OK(det_ckpt_wait(ctx));
    CHECK_OK(det_core_close(ctx));
}

/* Store a checkpoint at `steps` with one file "model.bin" holding `content`; its id into `id`. */
static void store_model(det_context *ctx, int steps, const char *content, char id[DET_STORAGE_ID_LEN]) {
    char meta[64];
    snprintf(meta, sizeof meta, "{\"steps_completed\": %d}", steps);
    det_ckpt_store *s = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, meta, false, &s));
    const char *path = NULL;
    CHECK_OK(det_ckpt_store_path(s, &path));
    write_in(path, "model.bin", content);
    CHECK_OK(det_ckpt_store_path_end(s, id));
}

static void damaged_checkpoints(void) {
    const char *dir = test_tmpdir("damaged");
    det_context *ctx = open_in(dir, "r");
    char old_id[DET_STORAGE_ID_LEN], new_id[DET_STORAGE_ID_LEN];
    store_model(ctx, 10, "weights at step 10", old_id);
    store_model(ctx, 20, "weights at step 20", new_id);
    char manifest[1000], model[1000];
    snprintf(manifest, sizeof manifest, "%s/ckpts/%s/.detcore-manifest.json", dir, new_id);
    CHECK(test_exists(manifest)); /* beside metadata.json */

    /* The restore scope names the checkpoint it restored. */
    det_ckpt_restore *r = NULL;
    CHECK_OK(det_ckpt_restore_path_begin(ctx, new_id, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL, &r));
    const char *rid = NULL;
    CHECK_ERR(det_ckpt_restore_storage_id(r, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_OK(det_ckpt_restore_storage_id(r, &rid));
    CHECK_STR(rid, new_id);
    CHECK_OK(det_ckpt_restore_path_end(r));
    CHECK_ERR(det_ckpt_restore_storage_id(r, &rid), DET_ERR_STATE, "not open");
    CHECK_ERR(det_ckpt_restore_storage_id(NULL, &rid), DET_ERR_INVALID_ARGUMENT, "NULL");
    CHECK_OK(det_core_close(ctx));

    /* One flipped byte in the newest checkpoint's file, behind detcore's back. */
    snprintf(model, sizeof model, "%s/ckpts/%s/model.bin", dir, new_id);
    CHECK(test_write_file(model, "weights at step 2O") == 0);

    /* Resuming: the damaged resume point is replaced by the newest checkpoint that verifies. */
    ctx = open_in(dir, "r");
    char *latest = NULL;
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, new_id);
    r = NULL;
    CHECK_OK(det_ckpt_restore_path_begin(ctx, latest, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, NULL, NULL, &r));
    det_string_free(latest);
    CHECK_OK(det_ckpt_restore_storage_id(r, &rid));
    CHECK_STR(rid, old_id);
    const char *rp = NULL;
    CHECK_OK(det_ckpt_restore_path(r, &rp));
    char p[1200];
    snprintf(p, sizeof p, "%s/model.bin", rp);
    char *c = test_read_file(p);
    CHECK_STR(c, "weights at step 10");
    free(c);
    CHECK_OK(det_ckpt_restore_path_end(r));
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, old_id);
    det_string_free(latest);
    int64_t steps = -1;
    CHECK_OK(det_info_steps_completed(ctx, &steps));
    CHECK(steps == 10);

    /* Named explicitly, the damaged checkpoint fails: DET_ERR_STORAGE naming the file. */
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, new_id, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL, &r),
              DET_ERR_STORAGE, "file \"model.bin\" is corrupt");
    char dl[800];
    snprintf(dl, sizeof dl, "%s/dl", dir);
    CHECK_ERR(det_ckpt_download(ctx, new_id, dl, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL), DET_ERR_STORAGE,
              "failed verification");
    snprintf(p, sizeof p, "%s/model.bin", dl);
    CHECK(!test_exists(p)); /* nothing of a damaged download is left */
    CHECK_OK(det_core_close(ctx));

    /* The damaged checkpoint left the run's index (its files stay for inspection). */
    snprintf(p, sizeof p, "%s/ckpts/%s", dir, new_id);
    CHECK(test_exists(p));
    ctx = open_in(dir, "r");
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK_STR(latest, old_id);
    det_string_free(latest);

    /* Nothing left that verifies: the resume fails, naming the file, and says what to do. */
    snprintf(model, sizeof model, "%s/ckpts/%s/model.bin", dir, old_id);
    CHECK(test_write_file(model, "weights") == 0);
    CHECK_ERR(det_ckpt_restore_path_begin(ctx, old_id, DET_DOWNLOAD_MODE_NO_SHARED_DOWNLOAD, NULL, NULL, &r),
              DET_ERR_STORAGE, "is 7 bytes, its manifest says 18 (truncated); the run has no older complete checkpoint");
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(store_and_restore), TEST(abort_leaves_nothing), TEST(close_aborts_open_scopes),
          TEST(metadata_is_checked_first),
          TEST(upload_and_download), TEST(delete_updates_resume_point), TEST(unusable_storage), TEST(full_disk),
          TEST(directory_dict_form), TEST(damaged_checkpoints))
