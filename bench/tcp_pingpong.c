/* The floor of a 2-process collective on this machine: the mean round trip of 64 bytes between
 * two processes over loopback TCP (TCP_NODELAY, blocking reads), the transport detcore's
 * collectives use. Prints microseconds per round trip. Usage: tcp_pingpong N */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int full(int fd, char *b, int n, int writing) {
    for (int got = 0; got < n;) {
        ssize_t r = writing ? write(fd, b + got, n - got) : read(fd, b + got, n - got);
        if (r <= 0) return -1;
        got += (int)r;
    }
    return 0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &len)) return perror("listen"), 1;
    pid_t child = fork();
    if (child == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, sizeof a)) _exit(1);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b[64];
        while (full(c, b, 64, 0) == 0 && full(c, b, 64, 1) == 0) {
        }
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b[64] = {0};
    for (long i = 0; i < n / 10; i++) /* warm up */
        if (full(s, b, 64, 1) || full(s, b, 64, 0)) return 1;
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (full(s, b, 64, 1) || full(s, b, 64, 0)) return 1;
    printf("%.3f\n", (now() - t0) / n * 1e6);
    close(s);
    waitpid(child, NULL, 0);
    return 0;
}
