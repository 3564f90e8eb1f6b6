/* futexpp N: N round trips between two threads over raw futexes on two words.
 * The main thread stores i in `ping` and wakes it; the other thread waits there
 * for i, stores i in `pong` and wakes that; the main thread waits on `pong` for i.
 * N = 0 still creates and joins the thread (start-up, to be subtracted). */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic int ping, pong;
static long n;

static void wait_for(_Atomic int *w, int want)
{
    int v;
    while ((v = atomic_load(w)) != want)
        syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void post(_Atomic int *w, int v)
{
    atomic_store(w, v);
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *other(void *arg)
{
    (void)arg;
    for (long i = 1; i <= n; i++) {
        wait_for(&ping, (int)i);
        post(&pong, (int)i);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atol(argv[1]) : 10000;
    pthread_t th;
    if (pthread_create(&th, NULL, other, NULL))
        return 1;
    for (long i = 1; i <= n; i++) {
        post(&ping, (int)i);
        wait_for(&pong, (int)i);
    }
    if (pthread_join(th, NULL))
        return 1;
    printf("ok %ld\n", n);
    return 0;
}
