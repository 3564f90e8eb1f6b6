/* mutexcount N [THREADS]: THREADS threads (4), let go together through a
 * barrier, add 1 to one counter under one pthread mutex until N increments in
 * all; prints "ok" when the sum is exact.
 * N = 0 still creates and joins the threads (start-up, to be subtracted). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t start;
static long counter, each;

static void *work(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    for (long i = 0; i < each; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (threads < 1 || threads > 64)
        return 2;
    pthread_t th[64];
    each = n / threads;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, work, NULL))
            return 1;
    for (int i = 0; i < threads; i++)
        if (pthread_join(th[i], NULL))
            return 1;
    if (counter != each * threads) {
        printf("wrong: %ld, expected %ld\n", counter, each * threads);
        return 1;
    }
    printf("ok %ld\n", counter);
    return 0;
}
