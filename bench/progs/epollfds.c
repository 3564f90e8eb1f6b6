/* epollfds N [FDS] [MODE]: FDS eventfds (1000) in one epoll set; each of N
 * iterations makes one of them readable (write 1), and
 *   MODE "epoll" (the default): epoll_waits for it (exactly that one must be
 *                reported), then reads it back to 0;
 *   MODE "plain": reads it back without the epoll_wait (the write and read
 *                alone, to be subtracted).
 * Prints "ok N"; "eventfd missing" (exit 3) when eventfd is ENOSYS. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    int nfds = argc > 2 ? atoi(argv[2]) : 1000;
    int plain = argc > 3 && strcmp(argv[3], "plain") == 0;
    int *fds = calloc((size_t)nfds, sizeof *fds);
    int ep = epoll_create1(0);
    if (!fds || ep < 0)
        return 1;
    for (int i = 0; i < nfds; i++) {
        fds[i] = eventfd(0, EFD_NONBLOCK);
        if (fds[i] < 0) {
            if (errno == ENOSYS) {
                printf("eventfd missing\n");
                return 3;
            }
            printf("eventfd %d: %s\n", i, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev))
            return 1;
    }
    for (long k = 0; k < n; k++) {
        int i = (int)((k * 7919) % nfds);  /* a different fd each time, all over the set */
        uint64_t one = 1, got;
        if (write(fds[i], &one, 8) != 8)
            return 1;
        if (!plain) {
            struct epoll_event evs[8];
            int r = epoll_wait(ep, evs, 8, -1);
            if (r != 1 || evs[0].data.u32 != (uint32_t)i || !(evs[0].events & EPOLLIN)) {
                printf("wrong: epoll_wait gave %d (fd %u) for fd %d\n", r, r > 0 ? evs[0].data.u32 : 0, i);
                return 1;
            }
        }
        if (read(fds[i], &got, 8) != 8 || got != 1)
            return 1;
    }
    printf("ok %ld\n", n);
    return 0;
}
