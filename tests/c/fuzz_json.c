/* A bounded mutational fuzzer of the entry points that take JSON text (run by ctest, and under
 * ASan/UBSan by scripts/sanitize.sh): hyperparameters and a storage dict at init, metrics and
 * batch metrics, checkpoint metadata (store and upload), run metadata, hyperparameter names.
 *
 * Inputs are mutated from a seed corpus (bit flips, inserted and deleted bytes, JSON tokens,
 * splices, invalid UTF-8, deep nesting, huge numbers). Every call must return a documented status
 * with a message — never DET_ERR_INTERNAL (a bug), never a crash or a memory error — and
 * accepted metrics must come back from metrics.jsonl as valid lines.
 *
 * FUZZ_SECONDS (default 20) bounds the run; FUZZ_SEED (default: the time) is printed, so that a
 * failure can be replayed. Exits 1 on the first bad status, printing the input. */
#include <detcore.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_INPUT 4096

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static const char *seeds[] = {
    "{}",
    "{\"loss\": 0.5, \"acc\": 1}",
    "{\"steps_completed\": 10}",
    "{\"steps_completed\": 10, \"nested\": {\"a\": [1, 2.5, \"x\", null, true]}}",
    "{\"lr\": 0.01, \"layers\": 2, \"opt\": {\"name\": \"sgd\", \"beta\": [0.9, 0.99]}}",
    "{\"x\": NaN, \"y\": Infinity, \"z\": -Infinity}",
    "{\"s\": \"a\\u0000b\\ud800\\udc00\\u00e9\\n\\\"\"}",
    "{\"big\": 18446744073709551616, \"neg\": -9223372036854775809, \"e\": 1e400}",
    "[{\"loss\": 1}, {\"loss\": 2}]",
    "{\"type\": \"directory\", \"container_path\": \"/nonexistent/x\"}",
    "{\"type\": \"s3\", \"bucket\": \"b\", \"endpoint_url\": \"http://127.0.0.1:1\", \"part_size\": 5242880}",
    "\"just a string\"",
    "123",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
};

static const char *tokens[] = {
    "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\u0000", "null", "true", "false",
    "NaN", "Infinity", "-Infinity", "nan", "-0", "1e999", "0.0000001", "99999999999999999999999999",
    "\"steps_completed\"", "\"type\"", "\"shared_fs\"", "\"s3\"", "\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x98\x80",
    "\x01", " ", "\n", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "{\"a\":{\"a\":{\"a\":{\"a\":",
};

/* Mutate `buf` (NUL-terminated, len bytes) in place; returns the new length. */
static size_t mutate(char *buf, size_t len) {
    int rounds = 1 + (int)below(4);
    for (int r = 0; r < rounds; r++) {
        switch (below(8)) {
        case 0: /* flip a bit */
            if (len) buf[below(len)] ^= (char)(1u << below(8));
            break;
        case 1: /* random byte inserted */
            if (len + 1 < MAX_INPUT) {
                size_t at = below(len + 1);
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (char)(1 + below(255));
                len++;
            }
            break;
        case 2: /* a range deleted */
            if (len) {
                size_t at = below(len), n = 1 + below(len - at);
                if (n > 16 && below(2)) n = 1 + below(16);
                memmove(buf + at, buf + at + n, len - at - n);
                len -= n;
            }
            break;
        case 3:
        case 4: { /* a token inserted */
            const char *t = tokens[below(sizeof tokens / sizeof tokens[0])];
            size_t tl = strlen(t);
            if (len + tl < MAX_INPUT) {
                size_t at = below(len + 1);
                memmove(buf + at + tl, buf + at, len - at);
                memcpy(buf + at, t, tl);
                len += tl;
            }
            break;
        }
        case 5: { /* a range duplicated */
            if (len) {
                size_t at = below(len), n = 1 + below(len - at);
                if (len + n < MAX_INPUT) {
                    size_t to = below(len + 1);
                    char tmp[MAX_INPUT];
                    memcpy(tmp, buf + at, n);
                    memmove(buf + to + n, buf + to, len - to);
                    memcpy(buf + to, tmp, n);
                    len += n;
                }
            }
            break;
        }
        case 6: { /* spliced with another seed */
            const char *s = seeds[below(sizeof seeds / sizeof seeds[0])];
            size_t sl = strlen(s), from = below(sl + 1), at = below(len + 1);
            size_t n = sl - from;
            if (at + n >= MAX_INPUT) n = MAX_INPUT - 1 - at;
            memcpy(buf + at, s + from, n);
            len = at + n;
            break;
        }
        default: /* truncated */
            if (len) len = below(len + 1);
            break;
        }
    }
    /* An embedded NUL just ends the C string: keep the length honest. */
    buf[len] = 0;
    return strlen(buf);
}

static const char *input;
static long calls;

static int check(det_status s, const char *what) {
    calls++;
    const char *name = det_status_name(s);
    int known = s == DET_OK || (s >= 1 && s <= 9) || (s >= 10 && s <= 19);
    if (s == DET_ERR_INTERNAL || !known || !name || strncmp(name, "DET_", 4) != 0 ||
        (s != DET_OK && (!det_last_error_message() || !det_last_error_message()[0]))) {
        fprintf(stderr, "FAIL: %s returned %d (%s): %s\ninput (%zu bytes): ", what, s, name ? name : "?",
                det_last_error_message(), strlen(input));
        for (const unsigned char *p = (const unsigned char *)input; *p; p++)
            fprintf(stderr, (*p >= 0x20 && *p < 0x7f && *p != '\\') ? "%c" : "\\x%02x", *p);
        fprintf(stderr, "\n");
        return 1;
    }
    return 0;
}

static det_context *open_ctx(const char *dir, const char *hparams, const char *storage, det_status *st) {
    det_init_options o;
    det_init_options_default(&o, sizeof o);
    static char ck[600], rd[600];
    snprintf(ck, sizeof ck, "%s/ckpts", dir);
    snprintf(rd, sizeof rd, "%s/run", dir);
    o.checkpoint_storage = storage ? storage : ck;
    o.run_dir = rd;
    o.run_name = "fuzz";
    o.hparams_json = hparams;
    o.disable_signal_handlers = true;
    o.tensorboard_mode = DET_TENSORBOARD_MODE_MANUAL;
    o.cluster_info_dir = "/nonexistent/detcore-fuzz-info";
    det_context *ctx = NULL;
    *st = det_core_init(&o, &ctx);
    return *st == DET_OK ? ctx : NULL;
}

int main(void) {
    const char *secs_env = getenv("FUZZ_SECONDS");
    double budget = secs_env && *secs_env ? atof(secs_env) : 20;
    const char *seed_env = getenv("FUZZ_SEED");
    uint64_t seed = seed_env && *seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    rng_state = seed ? seed : 1;
    printf("fuzz_json: seed %llu, %.0f s\n", (unsigned long long)seed, budget);
    fflush(stdout);

    char dir[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/detcore-fuzz-%d-XXXXXX", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    det_log_set_level(DET_LOG_LEVEL_OFF);
    det_status st;
    det_context *ctx = open_ctx(dir, NULL, NULL, &st);
    if (!ctx) {
        fprintf(stderr, "init: %s\n", det_last_error_message());
        return 2;
    }
    char buf[MAX_INPUT + 1];
    input = buf;
    time_t start = time(NULL);
    long iters = 0, accepted = 0;
    int bad = 0;
    while (!bad && difftime(time(NULL), start) < budget) {
        const char *seed_text = seeds[below(sizeof seeds / sizeof seeds[0])];
        size_t len = strlen(seed_text);
        memcpy(buf, seed_text, len + 1);
        len = mutate(buf, len);
        iters++;
        uint64_t step = rnd() % 1000;
        det_status s = det_train_report_metrics(ctx, "training", step, buf);
        bad |= check(s, "det_train_report_metrics");
        accepted += s == DET_OK;
        bad |= check(det_train_report_training_metrics(ctx, step, "{\"loss\": 1}", buf),
                     "det_train_report_training_metrics(batch_metrics)");
        bad |= check(det_train_report_validation_metrics(ctx, step, buf), "det_train_report_validation_metrics");
        det_ckpt_store *store = NULL;
        s = det_ckpt_store_path_begin(ctx, buf, false, &store);
        bad |= check(s, "det_ckpt_store_path_begin");
        if (s == DET_OK) bad |= check(det_ckpt_store_path_abort(store), "det_ckpt_store_path_abort");
        char *out = NULL;
        s = det_train_set_run_metadata(ctx, buf, &out);
        bad |= check(s, "det_train_set_run_metadata");
        det_string_free(out);
        double d;
        int64_t i;
        char *str = NULL;
        bad |= check(det_info_get_hparam_f64(ctx, buf, &d), "det_info_get_hparam_f64(name)");
        bad |= check(det_info_get_hparam_str(ctx, buf, &str), "det_info_get_hparam_str(name)");
        det_string_free(str);
        if (iters % 64 == 0) {
            /* Init parses hyperparameters and a storage dict. */
            det_context *c2 = open_ctx(dir, buf, NULL, &s);
            bad |= check(s, "det_core_init(hparams_json)");
            if (c2) {
                const char *names[] = {"lr", "opt.name", "opt", "s", "big", "x"};
                for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
                    bad |= check(det_info_get_hparam_i64(c2, names[k], &i), "det_info_get_hparam_i64");
                    bad |= check(det_info_get_hparam_str(c2, names[k], &str), "det_info_get_hparam_str");
                    det_string_free(str);
                    str = NULL;
                }
                char *h = NULL;
                bad |= check(det_info_hparams_json(c2, &h), "det_info_hparams_json");
                det_string_free(h);
                bad |= check(det_core_close(c2), "det_core_close(hparams)");
            }
            c2 = open_ctx(dir, NULL, buf, &s);
            bad |= check(s, "det_core_init(checkpoint_storage)");
            if (c2) bad |= check(det_core_close(c2), "det_core_close(storage)");
        }
    }
    bad |= check(det_train_flush(ctx, 60), "det_train_flush");
    bad |= check(det_core_close(ctx), "det_core_close");

    /* Every line written is JSON-shaped: one object per line, no line cut short. */
    char path[700];
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    long lines = 0;
    if (f) {
        static char line[1 << 16];
        while (fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            if (n < 3 || line[0] != '{' || line[n - 1] != '\n' || line[n - 2] != '}') {
                fprintf(stderr, "FAIL: metrics.jsonl line %ld is not one JSON object: %.200s\n", lines + 1, line);
                bad = 1;
                break;
            }
            lines++;
        }
        fclose(f);
    }
    if (!bad && lines < accepted) {
        fprintf(stderr, "FAIL: %ld reports accepted, %ld lines in metrics.jsonl\n", accepted, lines);
        bad = 1;
    }
    printf("fuzz_json: %ld inputs, %ld calls, %ld metrics accepted, %ld lines: %s\n", iters, calls, accepted,
           lines, bad ? "FAILED" : "ok");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return bad ? 1 : 0;
}
