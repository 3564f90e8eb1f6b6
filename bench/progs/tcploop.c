/* Loopback TCP between two processes, timed by the program itself (start-up excluded):
 *   tcploop tput MIB     a child writes MIB MiB in 64 KiB writes, the parent reads them
 *                        (64 KiB reads) and checks the byte count and a checksum
 *   tcploop rtt N        N one-byte ping-pongs over one TCP connection (TCP_NODELAY)
 *   tcploop pipertt N    N one-byte ping-pongs over two pipes, for comparison
 * Prints "ok <what> <seconds> <figure>" (MB/s for tput, microseconds per round trip). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
static unsigned char buf[CHUNK];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int full(int fd, unsigned char *p, size_t n, int writing) {
    while (n) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k <= 0) return -1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

/* A listener on 127.0.0.1, an ephemeral port (its address in *sa). */
static int listener(struct sockaddr_in *sa) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t len = sizeof *sa;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)sa, sizeof *sa) || listen(s, 1) ||
        getsockname(s, (struct sockaddr *)sa, &len)) {
        perror("listener");
        exit(2);
    }
    return s;
}

static int dial(const struct sockaddr_in *sa) {
    int c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (c < 0 || connect(c, (const struct sockaddr *)sa, sizeof *sa)) {
        perror("connect");
        _exit(2);
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

static int reap(pid_t pid) {
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int tput(long mib) {
    struct sockaddr_in sa;
    int l = listener(&sa);
    long chunks = mib * (1 << 20) / CHUNK;
    pid_t pid = fork();
    if (pid == 0) {
        int c = dial(&sa);
        for (long i = 0; i < CHUNK; i++) buf[i] = (unsigned char)(i * 7);
        for (long i = 0; i < chunks; i++)
            if (full(c, buf, CHUNK, 1)) _exit(1);
        close(c);
        _exit(0);
    }
    int a = accept(l, NULL, NULL), one = 1;
    if (a < 0) { perror("accept"); return 2; }
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double t0 = now();
    long long total = 0, bad = 0;
    for (;;) {
        ssize_t k = read(a, buf, CHUNK);
        if (k < 0) { perror("read"); return 1; }
        if (k == 0) break;
        /* a sample of what arrived against the pattern at its stream offset */
        for (ssize_t i = (4093 - total % 4093) % 4093; i < k; i += 4093)
            bad += buf[i] != (unsigned char)(((total + i) % CHUNK) * 7);
        total += k;
    }
    double dt = now() - t0;
    if (total != (long long)chunks * CHUNK || bad || !reap(pid)) {
        fprintf(stderr, "got %lld of %lld bytes, %lld wrong\n", total, (long long)chunks * CHUNK, bad);
        return 1;
    }
    printf("ok tput %.6f %.1f\n", dt, total / dt / 1e6);
    return 0;
}

static int rtt(long n) {
    struct sockaddr_in sa;
    int l = listener(&sa);
    pid_t pid = fork();
    if (pid == 0) {
        int c = dial(&sa);
        for (long i = 0; i < n; i++)
            if (full(c, buf, 1, 0) || full(c, buf, 1, 1)) _exit(1);
        _exit(0);
    }
    int a = accept(l, NULL, NULL), one = 1;
    if (a < 0) { perror("accept"); return 2; }
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (full(a, buf, 1, 1) || full(a, buf, 1, 0)) return 1;
    double dt = now() - t0;
    if (!reap(pid)) return 1;
    printf("ok rtt %.6f %.2f\n", dt, dt / n * 1e6);
    return 0;
}

static int pipertt(long n) {
    int there[2], back[2];
    if (pipe(there) || pipe(back)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++)
            if (full(there[0], buf, 1, 0) || full(back[1], buf, 1, 1)) _exit(1);
        _exit(0);
    }
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (full(there[1], buf, 1, 1) || full(back[0], buf, 1, 0)) return 1;
    double dt = now() - t0;
    if (!reap(pid)) return 1;
    printf("ok pipertt %.6f %.2f\n", dt, dt / n * 1e6);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s tput MIB | rtt N | pipertt N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "tput")) return tput(n);
    if (!strcmp(argv[1], "rtt")) return rtt(n);
    if (!strcmp(argv[1], "pipertt")) return pipertt(n);
    return 2;
}
