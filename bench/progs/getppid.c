/* getppid N [--stop]: N raw getppid syscalls (glibc's syscall(), no caching),
 * checking that every call returns the same value. Prints one line and exits 0.
 *
 * --stop is for bench/progs/ctracer.c: after libc's start-up, stop ourselves
 * with a raw kill(SIGSTOP), the tracer's cue to switch to PTRACE_SYSEMU; from
 * then on the only syscalls are the N getppid and one raw exit_group. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int stop = argc > 2 && strcmp(argv[2], "--stop") == 0;
    if (n < 1)
        n = 1;
    if (stop)
        syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    long first = syscall(SYS_getppid), bad = 0;
    for (long i = 1; i < n; i++)
        if (syscall(SYS_getppid) != first)
            bad++;
    if (stop)
        syscall(SYS_exit_group, bad ? 1 : 0);
    printf("getppid x%ld %s\n", n, bad ? "INCONSISTENT" : "ok");
    return bad ? 1 : 0;
}
