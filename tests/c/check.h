/* A minimal test harness for the C tests: CHECK_* macros report file:line and the library's
 * last error, and count failures; TEST_MAIN runs the listed tests in order. */
#ifndef DETCORE_TEST_CHECK_H
#define DETCORE_TEST_CHECK_H

#include <detcore.h>

#include "threads.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int check_failures = 0;
static const char *check_current = "";

#define FAILF(...)                                                                                \
    do {                                                                                          \
        fprintf(stderr, "FAIL %s (%s:%d): ", check_current, __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fprintf(stderr, "\n");                                                                    \
        check_failures++;                                                                         \
    } while (0)

/* Expect a call to return `want`. */
#define CHECK_STATUS(call, want)                                                                  \
    do {                                                                                          \
        det_status got_ = (call);                                                                 \
        if (got_ != (want))                                                                       \
            FAILF("%s returned %s, expected %s; last error: %s", #call, det_status_name(got_),    \
                  det_status_name(want), det_last_error_message());                               \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, DET_OK)

/* Expect a failure whose message contains `needle`. */
#define CHECK_ERR(call, want, needle)                                                             \
    do {                                                                                          \
        det_status got_ = (call);                                                                 \
        if (got_ != (want))                                                                       \
            FAILF("%s returned %s, expected %s; last error: %s", #call, det_status_name(got_),    \
                  det_status_name(want), det_last_error_message());                               \
        else if (!strstr(det_last_error_message(), (needle)))                                     \
            FAILF("%s: message \"%s\" lacks \"%s\"", #call, det_last_error_message(), (needle));  \
    } while (0)

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) FAILF("%s", #cond);                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                           \
    do {                                                                                          \
        const char *a_ = (a), *b_ = (b);                                                          \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                    \
            FAILF("%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");   \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                               \
    do {                                                                                          \
        const char *h_ = (hay);                                                                   \
        if (!h_ || !strstr(h_, (needle))) FAILF("%s = \"%s\" lacks \"%s\"", #hay, h_ ? h_ : "(null)", (needle)); \
    } while (0)

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    test_fn fn;
} test_case;

#define TEST(name) {#name, name}

/* A fresh temporary folder for a test; returns a static buffer. */
static inline const char *test_tmpdir(const char *tag) {
    static char buf[4][512];
    static int i = 0;
    char *b = buf[i++ % 4];
    const char *base = getenv("TMPDIR");
    snprintf(b, 512, "%s/detcore-ctest-%s-%d-XXXXXX", base && *base ? base : "/tmp", tag, (int)getpid());
    if (!mkdtemp(b)) {
        perror("mkdtemp");
        exit(2);
    }
    return b;
}

/* Read a whole file into a malloc'd, NUL-terminated buffer (NULL if missing). */
static inline char *test_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static inline int test_write_file(const char *path, const char *content) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(content, f);
    return fclose(f);
}

static inline int test_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Options for an isolated off-cluster context in `dir`: storage dir/ckpts, run dir dir/run. */
static inline void test_options(det_init_options *o, const char *dir, const char *run_name) {
    static char storage[600], run_dir[600];
    if (det_init_options_default(o, sizeof *o) != DET_OK) {
        fprintf(stderr, "det_init_options_default failed\n");
        exit(2);
    }
    snprintf(storage, sizeof storage, "%s/ckpts", dir);
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    o->checkpoint_storage = storage;
    o->run_dir = run_dir;
    o->run_name = run_name;
    o->cluster_info_dir = "/nonexistent/detcore-test-info";
}

/* Bytes that are not UTF-8, for the "is not valid UTF-8" errors. */
__attribute__((unused)) static const char BAD_UTF8[] = {(char)0xff, (char)0xfe, 'x', 0};

/* An off-cluster context in a fresh folder tagged `tag`, without signal handlers. */
static inline det_context *test_off_cluster(const char *tag, const char *run_name) {
    det_init_options o;
    test_options(&o, test_tmpdir(tag), run_name);
    o.disable_signal_handlers = true;
    det_context *ctx = NULL;
    CHECK_OK(det_core_init(&o, &ctx));
    return ctx;
}

/* Number of entries of folder `dir` whose name contains `needle` (-1: no such folder). */
static inline int test_count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static inline int run_tests(const test_case *tests, size_t n) {
    det_log_set_level(DET_LOG_LEVEL_WARNING);
    for (size_t i = 0; i < n; i++) {
        check_current = tests[i].name;
        int before = check_failures;
        tests[i].fn();
        fprintf(stderr, "%s %s\n", check_failures == before ? "ok  " : "FAIL", tests[i].name);
    }
    if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}

#define TEST_MAIN(...)                                                                            \
    int main(void) {                                                                              \
        static const test_case tests_[] = {__VA_ARGS__};                                          \
        return run_tests(tests_, sizeof tests_ / sizeof tests_[0]);                               \
    }

#endif
