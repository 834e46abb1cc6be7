/* What a C trainer author meets in a day with detcore (issue 14): metrics formatted with printf
 * that hold nan/inf, a run_start record per run in metrics.jsonl, the checkpoint storage from
 * DETCORE_CHECKPOINT_STORAGE, the log line that names the run and what it resumes, the typed
 * det_ckpt_store_path_begin_steps, the DET_CHECK macro, hyperparameter getters with a default,
 * the halt file seen by the first det_should_preempt, and the lifetimes of a restore. */
#include "check.h"

#include <fcntl.h>
#include <math.h>

static det_context *open_ctx(const char *dir, const char *run, const char *hparams) {
    det_init_options o;
    test_options(&o, dir, run);
    o.disable_signal_handlers = true;
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.hparams_json = hparams;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static char *metrics_of(const char *dir) {
    char p[800];
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", dir);
    return test_read_file(p);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* stderr into a file while `capture_begin` .. `capture_end` (detcore logs there). */
static int capture_fd = -1;
static char capture_path[600];

static void capture_begin(const char *dir) {
    snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", dir);
    fflush(stderr);
    capture_fd = dup(2);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    det_log_set_level(DET_LOG_LEVEL_INFO);
}

static char *capture_end(void) {
    det_log_set_level(DET_LOG_LEVEL_WARNING);
    fflush(stderr);
    dup2(capture_fd, 2);
    close(capture_fd);
    return test_read_file(capture_path);
}

/* ---- 1. nan, -nan, inf, -inf as printf writes them ------------------------------------------- */

static void printf_non_finite_values_are_accepted(void) {
    const char *dir = test_tmpdir("printfnan");
    det_context *ctx = open_ctx(dir, "nan", NULL);
    char json[512];
    /* glibc's printf: "nan", "-nan", "inf", "-inf"; "%F": "NAN", "INF". */
    snprintf(json, sizeof json, "{\"loss\": %f, \"neg\": %f, \"up\": %f, \"down\": %f, \"big\": %F, \"g\": %g}", NAN,
             copysign(NAN, -1.0), INFINITY, -INFINITY, NAN, -INFINITY);
    CHECK_CONTAINS(json, "\"neg\": -nan");
    CHECK_CONTAINS(json, "\"big\": NAN");
    CHECK_OK(det_train_report_validation_metrics(ctx, 5, json));
    CHECK_OK(det_train_report_training_metrics(ctx, 5, json, "[{\"loss\": inf}, {\"loss\": -Infinity}]"));
    CHECK_OK(det_train_report_metrics(ctx, "eval", 5, "{\"x\": Inf, \"y\": infinity, \"z\": -INFINITY}"));
    CHECK_OK(det_train_set_run_metadata(ctx, "{\"best\": nan}", NULL));
    /* Checkpoint metadata too: kept as Python's json.dump writes it, returned as strings. */
    det_ckpt_store *store = NULL;
    CHECK_OK(det_ckpt_store_path_begin(ctx, "{\"steps_completed\": 5, \"loss\": -nan}", false, &store));
    char id[DET_STORAGE_ID_LEN];
    CHECK_OK(det_ckpt_store_path_end(store, id));
    char *md = NULL;
    CHECK_OK(det_ckpt_get_metadata(ctx, id, &md));
    CHECK_STR(md, "{\"steps_completed\": 5, \"loss\": \"NaN\"}");
    det_string_free(md);
    char path[800];
    snprintf(path, sizeof path, "%s/ckpts/%s/metadata.json", dir, id);
    char *file = test_read_file(path);
    CHECK_STR(file, "{\n  \"steps_completed\": 5,\n  \"loss\": NaN\n}");
    free(file);

    /* Not a number: still refused, naming the place. */
    CHECK_ERR(det_train_report_training_metrics(ctx, 6, "{\"loss\": nano}", NULL), DET_ERR_INVALID_ARGUMENT,
              "malformed JSON");
    CHECK_ERR(det_train_report_training_metrics(ctx, 6, "{\"loss\": +inf}", NULL), DET_ERR_INVALID_ARGUMENT,
              "line 1, column 10");
    CHECK_ERR(det_train_report_training_metrics(ctx, 6, "{\"loss\": info}", NULL), DET_ERR_INVALID_ARGUMENT,
              "malformed JSON");
    CHECK_OK(det_train_flush(ctx, 10));

    char *text = metrics_of(dir);
    CHECK(count(text, "\"metrics\": {\"loss\": \"NaN\", \"neg\": \"NaN\", \"up\": \"Infinity\", "
                      "\"down\": \"-Infinity\", \"big\": \"NaN\", \"g\": \"-Infinity\"}") == 2);
    CHECK_CONTAINS(text, "\"batch_metrics\": [{\"loss\": \"Infinity\"}, {\"loss\": \"-Infinity\"}]");
    CHECK_CONTAINS(text, "\"metrics\": {\"x\": \"Infinity\", \"y\": \"Infinity\", \"z\": \"-Infinity\"}");
    CHECK(count(text, "\"steps_completed\": 6") == 0);
    free(text);
    char *meta = NULL;
    CHECK_OK(det_train_get_run_metadata(ctx, &meta));
    CHECK_STR(meta, "{\"best\": \"NaN\"}");
    det_string_free(meta);
    CHECK_OK(det_core_close(ctx));
}

/* ---- 2. run_start, and 3b. the log line naming the run ------------------------------------------ */

static void each_run_starts_with_a_record_and_a_log_line(void) {
    const char *dir = test_tmpdir("runstart");
    const char *names[] = {"loss"};
    double v = 1;

    capture_begin(dir);
    det_context *ctx = open_ctx(dir, "twice", NULL);
    char *log1 = capture_end();
    CHECK_CONTAINS(log1, "run \"twice\" (name from det_init_options.run_name): no checkpoint of this run in shared_fs ");
    CHECK_CONTAINS(log1, "starting fresh");
    free(log1);
    for (int step = 1; step <= 3; step++) {
        CHECK_OK(det_train_report_scalars(ctx, "training", step, names, &v, 1));
        if (step == 2) {
            det_ckpt_store *store = NULL;
            CHECK_OK(det_ckpt_store_path_begin_steps(ctx, step, NULL, false, &store));
            CHECK_OK(det_ckpt_store_path_end(store, NULL));
        }
    }
    CHECK_OK(det_core_close(ctx)); /* as if killed after step 3: step 3 is done again below */
    char *latest = NULL;

    capture_begin(dir);
    ctx = open_ctx(dir, "twice", NULL);
    char *log2 = capture_end();
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    CHECK(latest != NULL);
    if (!latest) return;
    char want[400];
    snprintf(want, sizeof want, "run \"twice\" (name from det_init_options.run_name): resuming from checkpoint %s "
                                "(steps_completed=2) in shared_fs ", latest);
    CHECK_CONTAINS(log2, want);
    CHECK_CONTAINS(log2, "to start fresh instead, use another run name (DET_RUN_NAME or det_init_options.run_name) "
                         "or delete the folder .detcore/runs/twice/ in that storage");
    free(log2);
    CHECK_OK(det_train_report_scalars(ctx, "training", 3, names, &v, 1));
    CHECK_OK(det_core_close(ctx));

    char *text = metrics_of(dir);
    CHECK(count(text, "\"type\": \"run_start\"") == 2);
    CHECK(count(text, "\"steps_completed\": 3, \"report_time\"") == 2); /* the repeated step */
    /* The first record opens the file; the second follows every line of the first run. */
    char first[200];
    snprintf(first, sizeof first, "{\"type\": \"run_start\", \"run_name\": \"twice\", \"pid\": %d, \"host\": \"",
             (int)getpid());
    CHECK(text && strncmp(text, first, strlen(first)) == 0);
    CHECK_CONTAINS(text, "\"resumes_from\": null, \"report_time\": \"20");
    char resumed[300];
    snprintf(resumed, sizeof resumed, "\"resumes_from\": {\"storage_id\": \"%s\", \"steps_completed\": 2}, \"report_time\"",
             latest);
    const char *second = text ? strstr(text, resumed) : NULL;
    CHECK(second != NULL);
    const char *first_step3 = text ? strstr(text, "\"steps_completed\": 3, \"report_time\"") : NULL;
    CHECK(second && first_step3 && first_step3 < second && strstr(second, "\"steps_completed\": 3, \"report_time\""));
    free(text);
    det_string_free(latest);
}

/* ---- 3. DETCORE_CHECKPOINT_STORAGE ------------------------------------------------------------ */

static det_status store_one(det_context *ctx, char id[DET_STORAGE_ID_LEN]) {
    det_ckpt_store *store = NULL;
    det_status st = det_ckpt_store_path_begin_steps(ctx, 1, NULL, false, &store);
    if (st != DET_OK) return st;
    return det_ckpt_store_path_end(store, id);
}

static void checkpoint_storage_from_the_environment(void) {
    const char *dir = test_tmpdir("envstorage");
    char env_dir[700], opt_dir[700], path[900], value[900];
    snprintf(env_dir, sizeof env_dir, "%s/from-env", dir);
    snprintf(opt_dir, sizeof opt_dir, "%s/from-option", dir);
    det_init_options o;
    det_context *ctx = NULL;
    char id[DET_STORAGE_ID_LEN];

    /* A path, file:// and a JSON dict: the option's forms. */
    const char *forms[] = {"%s", "file://%s", "{\"type\": \"directory\", \"container_path\": \"%s\"}"};
    for (int i = 0; i < 3; i++) {
        snprintf(value, sizeof value, forms[i], env_dir);
        setenv("DETCORE_CHECKPOINT_STORAGE", value, 1);
        test_options(&o, dir, "env");
        o.checkpoint_storage = NULL;
        o.disable_signal_handlers = true;
        CHECK_OK(det_core_init(&o, &ctx));
        CHECK_OK(store_one(ctx, id));
        snprintf(path, sizeof path, "%s/%s/metadata.json", env_dir, id);
        if (!test_exists(path)) FAILF("%s: no checkpoint at %s", value, path);
        CHECK_OK(det_core_close(ctx));
    }

    /* The option wins. */
    setenv("DETCORE_CHECKPOINT_STORAGE", env_dir, 1);
    test_options(&o, dir, "env2");
    o.checkpoint_storage = opt_dir;
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(store_one(ctx, id));
    snprintf(path, sizeof path, "%s/%s/metadata.json", opt_dir, id);
    CHECK(test_exists(path));
    snprintf(path, sizeof path, "%s/%s", env_dir, id);
    CHECK(!test_exists(path));
    CHECK_OK(det_core_close(ctx));

    /* A bad value is refused at init, naming the variable. */
    setenv("DETCORE_CHECKPOINT_STORAGE", "ftp://x/y", 1);
    test_options(&o, dir, "env3");
    o.checkpoint_storage = NULL;
    ctx = NULL;
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "DETCORE_CHECKPOINT_STORAGE: checkpoint_storage: unknown scheme");
    CHECK(ctx == NULL);
    setenv("DETCORE_CHECKPOINT_STORAGE", "{\"type\": \"directory\"", 1);
    CHECK_ERR(det_core_init(&o, &ctx), DET_ERR_INVALID_ARGUMENT, "DETCORE_CHECKPOINT_STORAGE: checkpoint_storage: malformed JSON");
    /* Empty means unset (the default folder under $XDG_DATA_HOME). */
    setenv("DETCORE_CHECKPOINT_STORAGE", "", 1);
    char xdg[700];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    setenv("XDG_DATA_HOME", xdg, 1);
    CHECK_OK(det_core_init(&o, &ctx));
    CHECK_OK(store_one(ctx, id));
    snprintf(path, sizeof path, "%s/determined/%s/metadata.json", xdg, id);
    CHECK(test_exists(path));
    CHECK_OK(det_core_close(ctx));
    unsetenv("XDG_DATA_HOME");
    unsetenv("DETCORE_CHECKPOINT_STORAGE");
}

/* ---- 4. det_ckpt_store_path_begin_steps --------------------------------------------------------- */

static void typed_begin_takes_steps_completed(void) {
    const char *dir = test_tmpdir("typedbegin");
    det_context *ctx = open_ctx(dir, "typed", NULL);
    det_ckpt_store *store = NULL;
    char id[DET_STORAGE_ID_LEN], *md = NULL;

    CHECK_OK(det_ckpt_store_path_begin_steps(ctx, 7, NULL, false, &store));
    CHECK_OK(det_ckpt_store_path_end(store, id));
    CHECK_OK(det_ckpt_get_metadata(ctx, id, &md));
    CHECK_STR(md, "{\"steps_completed\": 7}");
    det_string_free(md);

    CHECK_OK(det_ckpt_store_path_begin_steps(ctx, 2147483647, "{\"reason\": \"preempted\", \"loss\": nan}", false, &store));
    CHECK_OK(det_ckpt_store_path_end(store, id));
    CHECK_OK(det_ckpt_get_metadata(ctx, id, &md));
    CHECK_STR(md, "{\"steps_completed\": 2147483647, \"reason\": \"preempted\", \"loss\": \"NaN\"}");
    det_string_free(md);

    /* shard = true is a collective; with one rank it is a plain checkpoint. */
    CHECK_OK(det_ckpt_store_path_begin_steps(ctx, 8, "{}", true, &store));
    CHECK_OK(det_ckpt_store_path_end(store, id));

    det_ckpt_store *untouched = (det_ckpt_store *)0x1;
    store = untouched;
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, -1, NULL, false, &store), DET_ERR_INVALID_ARGUMENT,
              "steps_completed: must be between 0 and 2147483647, got -1");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 2147483648LL, NULL, false, &store), DET_ERR_INVALID_ARGUMENT,
              "got 2147483648");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 1, "{\"steps_completed\": 1}", false, &store),
              DET_ERR_INVALID_ARGUMENT, "extra_metadata_json holds \"steps_completed\"");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 1, "[1]", false, &store), DET_ERR_INVALID_ARGUMENT,
              "extra_metadata_json: expected a JSON object, got array");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 1, "{\"a\": }", false, &store), DET_ERR_INVALID_ARGUMENT,
              "extra_metadata_json: malformed JSON");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 1, "{\"a\": \"\xff\"}", false, &store), DET_ERR_INVALID_ARGUMENT,
              "extra_metadata_json is not valid UTF-8");
    CHECK_ERR(det_ckpt_store_path_begin_steps(ctx, 1, NULL, false, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK(store == untouched); /* written only on success */
    CHECK_OK(det_core_close(ctx));

    /* The next run resumes from the checkpoint with the most steps. */
    ctx = open_ctx(dir, "typed", NULL);
    int64_t steps = 0;
    CHECK_OK(det_info_steps_completed(ctx, &steps));
    CHECK(steps == 2147483647);
    CHECK_OK(det_core_close(ctx));
}

/* ---- 5. DET_CHECK and det_info_get_hparam_*_or ---------------------------------------------------- */

static int check_line;
static int evaluations;

static det_status counted(det_status st) {
    evaluations++;
    return st;
}

/* The default DET_CHECK_FAIL: return the status from the enclosing function. */
static det_status default_action(det_context *ctx, double *lr) {
    DET_CHECK(counted(det_info_get_hparam_f64(ctx, "lr", lr))); /* succeeds: goes on */
    check_line = __LINE__ + 1;
    DET_CHECK(counted(det_info_get_hparam_f64(ctx, "missing", lr)));
    *lr = -1; /* not reached */
    return DET_OK;
}

/* Another action, chosen by defining DET_CHECK_FAIL (here after the include: the macro is expanded
 * where DET_CHECK is used). */
#undef DET_CHECK_FAIL
#define DET_CHECK_FAIL(status) \
    do {                       \
        failed_with = (status);  \
        goto cleanup;          \
    } while (0)

static int custom_action(det_context *ctx) {
    det_status failed_with = DET_OK;
    char *s = NULL;
    DET_CHECK(det_info_get_hparam_str(ctx, "lr", &s));
    det_string_free(s);
    return 0;
cleanup:
    return failed_with == DET_ERR_INVALID_ARGUMENT ? 1 : 2;
}

static void check_macro_prints_and_acts(void) {
    const char *dir = test_tmpdir("detcheck");
    det_context *ctx = open_ctx(dir, "check", "{\"lr\": 0.5}");
    double lr = 0;
    capture_begin(dir);
    det_status st = default_action(ctx, &lr);
    int custom = custom_action(ctx);
    char *err = capture_end();
    CHECK(st == DET_ERR_NOT_FOUND);
    CHECK(lr == 0.5);
    CHECK(evaluations == 2); /* each call evaluated once */
    char want[300];
    snprintf(want, sizeof want,
             "test_scenario_trainer_day.c:%d: counted(det_info_get_hparam_f64(ctx, \"missing\", lr)) failed: DET_ERR_NOT_FOUND: "
             "det_info_get_hparam_f64: hparam \"missing\" not found (have: \"lr\")\n",
             check_line);
    CHECK_CONTAINS(err, want);
    CHECK(custom == 1);
    CHECK_CONTAINS(err, "det_info_get_hparam_str(ctx, \"lr\", &s) failed: DET_ERR_INVALID_ARGUMENT: ");
    CHECK(count(err, " failed: ") == 2);
    free(err);
    CHECK_OK(det_core_close(ctx));
}

static void hparam_getters_with_a_default(void) {
    const char *dir = test_tmpdir("hpor");
    det_context *ctx = open_ctx(
        dir, "hp", "{\"lr\": 0.5, \"n\": 3, \"name\": \"mlp\", \"opt\": {\"beta\": 0.9}, \"bad\": \"x\", \"nul\": null}");
    double d = -7;
    int64_t i = -7;
    char *s = NULL;

    CHECK_OK(det_info_get_hparam_f64_or(ctx, "lr", 1.0, &d));
    CHECK(d == 0.5);
    CHECK_OK(det_info_get_hparam_f64_or(ctx, "n", 1.0, &d));
    CHECK(d == 3.0);
    CHECK_OK(det_info_get_hparam_f64_or(ctx, "opt.beta", 1.0, &d));
    CHECK(d == 0.9);
    CHECK_OK(det_info_get_hparam_f64_or(ctx, "missing", 1.5, &d));
    CHECK(d == 1.5);
    CHECK_OK(det_info_get_hparam_f64_or(ctx, "opt.missing", 2.5, &d));
    CHECK(d == 2.5);
    d = -7;
    CHECK_ERR(det_info_get_hparam_f64_or(ctx, "bad", 1.0, &d), DET_ERR_INVALID_ARGUMENT,
              "hparam \"bad\" is string \"x\", not a number");
    CHECK_ERR(det_info_get_hparam_f64_or(ctx, "nul", 1.0, &d), DET_ERR_INVALID_ARGUMENT, "is null null, not a number");
    CHECK(d == -7); /* untouched on failure */

    CHECK_OK(det_info_get_hparam_i64_or(ctx, "n", 9, &i));
    CHECK(i == 3);
    CHECK_OK(det_info_get_hparam_i64_or(ctx, "missing", -4, &i));
    CHECK(i == -4);
    i = -7;
    CHECK_ERR(det_info_get_hparam_i64_or(ctx, "lr", 9, &i), DET_ERR_INVALID_ARGUMENT, "not an integer");
    CHECK(i == -7);

    CHECK_OK(det_info_get_hparam_str_or(ctx, "name", "dflt", &s));
    CHECK_STR(s, "mlp");
    det_string_free(s);
    CHECK_OK(det_info_get_hparam_str_or(ctx, "missing", "dflt", &s));
    CHECK_STR(s, "dflt");
    det_string_free(s);
    s = (char *)"sentinel";
    CHECK_OK(det_info_get_hparam_str_or(ctx, "missing", NULL, &s));
    CHECK(s == NULL);
    s = NULL;
    CHECK_ERR(det_info_get_hparam_str_or(ctx, "n", "dflt", &s), DET_ERR_INVALID_ARGUMENT, "not a string");
    CHECK(s == NULL);

    CHECK_ERR(det_info_get_hparam_f64_or(ctx, NULL, 1.0, &d), DET_ERR_INVALID_ARGUMENT, "name is NULL");
    CHECK_ERR(det_info_get_hparam_i64_or(ctx, "n", 1, NULL), DET_ERR_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(det_info_get_hparam_str_or(ctx, "\xff", "d", &s), DET_ERR_INVALID_ARGUMENT, "name is not valid UTF-8");
    CHECK_ERR(det_info_get_hparam_str_or(ctx, "x", "\xff", &s), DET_ERR_INVALID_ARGUMENT,
              "default_value is not valid UTF-8");
    CHECK_OK(det_core_close(ctx));
}

/* ---- 6. the halt file --------------------------------------------------------------------------- */

static det_context *open_with_halt_file(const char *dir, const char *halt) {
    det_init_options o;
    test_options(&o, dir, "halt");
    o.disable_signal_handlers = true;
    o.halt_file = halt;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

static void halt_file_is_seen_by_the_first_call(void) {
    const char *dir = test_tmpdir("halt");
    char halt[700];
    snprintf(halt, sizeof halt, "%s/HALT", dir);
    bool stop = false;

    /* Created after init: the watcher, which looked at its start, polls only every 500 ms; the first
     * should_preempt looks itself. */
    det_context *ctx = open_with_halt_file(dir, halt);
    capture_begin(dir);
    usleep(100000); /* the watcher has looked once and waits for its next poll */
    CHECK(test_write_file(halt, "") == 0);
    CHECK_OK(det_should_preempt(ctx, &stop));
    char *log = capture_end();
    CHECK(stop);
    char want[2000];
    snprintf(want, sizeof want,
             "halt file %s exists: this run saves and stops at its next should_preempt. detcore never removes it: "
             "every restart of this job stops the same way until you delete it (rm %s)",
             halt, halt);
    CHECK_CONTAINS(log, want);
    CHECK(strstr(log, "INFO") != NULL);
    free(log);
    CHECK_OK(det_core_close(ctx));
    CHECK(test_exists(halt)); /* never removed */

    /* A restart with the file still there stops at its first call. */
    ctx = open_with_halt_file(dir, halt);
    stop = false;
    CHECK_OK(det_should_preempt(ctx, &stop));
    CHECK(stop);
    CHECK_OK(det_core_close(ctx));

    /* Removed: the next restart trains. */
    CHECK(unlink(halt) == 0);
    ctx = open_with_halt_file(dir, halt);
    stop = true;
    CHECK_OK(det_should_preempt(ctx, &stop));
    CHECK(!stop);
    CHECK_OK(det_core_close(ctx));
}

/* ---- 7. lifetimes of a restore -------------------------------------------------------------------- */

static void restore_lifetimes(void) {
    const char *dir = test_tmpdir("restore");
    det_context *ctx = open_ctx(dir, "restore", NULL);
    det_ckpt_store *store = NULL;
    CHECK_OK(det_ckpt_store_path_begin_steps(ctx, 3, NULL, false, &store));
    const char *w = NULL;
    CHECK_OK(det_ckpt_store_path(store, &w));
    char file[900];
    snprintf(file, sizeof file, "%s/weights", w);
    CHECK(test_write_file(file, "w3") == 0);
    CHECK_OK(det_ckpt_store_path_end(store, NULL));
    CHECK_OK(det_core_close(ctx));

    ctx = open_ctx(dir, "restore", NULL);
    char *latest = NULL;
    CHECK_OK(det_info_latest_checkpoint(ctx, &latest));
    det_ckpt_restore *r1 = NULL, *r2 = NULL;
    CHECK_OK(det_ckpt_restore_path_begin(ctx, latest, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, NULL, NULL, &r1));
    det_string_free(latest); /* only read during the call */
    /* Two scopes may be open at once. */
    char *again = NULL;
    CHECK_OK(det_info_latest_checkpoint(ctx, &again));
    CHECK_OK(det_ckpt_restore_path_begin(ctx, again, DET_DOWNLOAD_MODE_LOCAL_WORKERS_SHARE_DOWNLOAD, NULL, NULL, &r2));
    det_string_free(again);
    const char *p1 = NULL, *p2 = NULL;
    CHECK_OK(det_ckpt_restore_path(r1, &p1));
    CHECK_OK(det_ckpt_restore_path(r2, &p2));
    CHECK_STR(p1, p2);
    /* ... the model build and data-loader set-up happen here, the scope still open ... */
    snprintf(file, sizeof file, "%s/weights", p1);
    char *content = test_read_file(file);
    CHECK_STR(content, "w3");
    free(content);
    CHECK_OK(det_ckpt_restore_path_end(r1));
    CHECK_OK(det_ckpt_restore_path_end(r2));
    const char *after = NULL;
    CHECK_ERR(det_ckpt_restore_path(r1, &after), DET_ERR_STATE, "");
    CHECK(after == NULL);
    CHECK_ERR(det_ckpt_restore_path_end(r1), DET_ERR_STATE, "");
    CHECK_OK(det_core_close(ctx));
}

TEST_MAIN(TEST(printf_non_finite_values_are_accepted), TEST(each_run_starts_with_a_record_and_a_log_line),
          TEST(checkpoint_storage_from_the_environment), TEST(typed_begin_takes_steps_completed),
          TEST(check_macro_prints_and_acts), TEST(hparam_getters_with_a_default),
          TEST(halt_file_is_seen_by_the_first_call), TEST(restore_lifetimes))
