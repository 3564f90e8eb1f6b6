/* 64 KiB messages back and forth between two processes over two pipes, argv[1] round trips. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MSG 65536
static char buf[MSG];

static int full(int fd, char *p, size_t n, int writing) {
    while (n) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k <= 0) return -1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    int there[2], back[2];
    if (pipe(there) || pipe(back)) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++)
            if (full(there[0], buf, MSG, 0) || full(back[1], buf, MSG, 1)) _exit(1);
        _exit(0);
    }
    for (long i = 0; i < MSG; i++) buf[i] = (char)i;
    for (long i = 0; i < n; i++)
        if (full(there[1], buf, MSG, 1) || full(back[0], buf, MSG, 0)) return 1;
    int st;
    waitpid(pid, &st, 0);
    printf("ok %ld\n", n);
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
