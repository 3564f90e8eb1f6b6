/* seqio PATH MIB: write MIB MiB to PATH in 1 MiB writes (no fsync: the page cache is
 * what is measured, as for tmpfs), then read it
 * back in 1 MiB reads; print the two throughputs in MB/s (its own clock). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long mib = atol(argv[2]);
    static char buf[1 << 20];
    memset(buf, 'x', sizeof buf);
    int fd = open(argv[1], O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) { perror("open"); return 1; }
    double t0 = now();
    for (long i = 0; i < mib; i++)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("write"); return 1; }
    close(fd);
    double t1 = now();
    fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += n;
    close(fd);
    double t2 = now();
    unlink(argv[1]);
    if (total != mib << 20) { fprintf(stderr, "short read %ld\n", total); return 1; }
    printf("write %.0f MB/s read %.0f MB/s\n", mib * 1.048576 / (t1 - t0), mib * 1.048576 / (t2 - t1));
    return 0;
}
