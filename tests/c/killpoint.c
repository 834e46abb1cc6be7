/* An LD_PRELOAD shim for the kill -9 tests (tests/python/test_hardening.py): it kills its own
 * process with SIGKILL at an exact point of detcore's publication protocol, the N-th `rename(2)`
 * whose paths match, before or after the call. Nothing is simulated: the process dies as under
 * `kill -9`, with the file system in exactly the state that point leaves.
 *
 *   KILLPOINT_OLD   substring the old path must contain (optional)
 *   KILLPOINT_NEW   substring the new path must contain (optional)
 *   KILLPOINT_WHEN  "before" (default) or "after" the rename
 *   KILLPOINT_NTH   which matching call (default 1) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*rename_fn)(const char *, const char *);

static int matches(const char *oldp, const char *newp) {
    const char *o = getenv("KILLPOINT_OLD"), *n = getenv("KILLPOINT_NEW");
    if (!o && !n) return 0;
    if (o && (!oldp || !strstr(oldp, o))) return 0;
    if (n && (!newp || !strstr(newp, n))) return 0;
    return 1;
}

int rename(const char *oldp, const char *newp) {
    static rename_fn real = NULL;
    static int count = 0;
    if (!real) real = (rename_fn)dlsym(RTLD_NEXT, "rename");
    int hit = 0;
    if (matches(oldp, newp)) {
        const char *nth = getenv("KILLPOINT_NTH");
        hit = ++count == (nth ? atoi(nth) : 1);
    }
    const char *when = getenv("KILLPOINT_WHEN");
    int after = when && strcmp(when, "after") == 0;
    if (hit && !after) kill(getpid(), SIGKILL);
    int r = real(oldp, newp);
    if (hit && after) kill(getpid(), SIGKILL);
    return r;
}
