/* Thread counting for the tests that check det_core_close joins every thread it started. */
#ifndef DETCORE_TEST_THREADS_H
#define DETCORE_TEST_THREADS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The number of threads of this process (Linux: /proc/self/status), -1 if unknown. */
static inline int test_thread_count(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8)) n = atoi(line + 8);
    if (f) fclose(f);
    return n;
}

#endif
