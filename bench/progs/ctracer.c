/* ctracer MODE PROGRAM ARGS...: the floor of the ptrace design, in C.
 *
 * Runs PROGRAM (bench/progs/getppid.c with --stop) under ptrace. Until the
 * child's own SIGSTOP (sent after libc's start-up) it runs freely; from then
 * on it runs under PTRACE_SYSEMU and every syscall is answered here, with one
 * stop per call, one GETREGS and one SETREGS, as the sentry's ptrace platform
 * does: getppid returns a fixed value, exit_group/exit end the run with the
 * child's status; any other syscall is an error (exit 2).
 *
 * MODE: "pin"   tracer and tracee on one CPU (the tracer's current one),
 *               as the sentry does;
 *       "free"  no affinity set: the scheduler places both.
 * Prints "ctracer: N getppid" to stderr and exits with the child's status. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SYSEMU
#define PTRACE_SYSEMU 31
#endif

static pid_t child;

static void die(const char *what)
{
    fprintf(stderr, "ctracer: %s: %s\n", what, strerror(errno));
    if (child > 0)
        kill(child, SIGKILL);
    exit(2);
}

static void fail(const char *msg, long v)
{
    fprintf(stderr, "ctracer: %s %ld\n", msg, v);
    if (child > 0)
        kill(child, SIGKILL);
    exit(2);
}

static int wait_stop(void)
{
    int st;
    if (waitpid(child, &st, __WALL) < 0)
        die("waitpid");
    if (WIFEXITED(st))
        fail("child exited early with status", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        fail("child killed by signal", WTERMSIG(st));
    return WSTOPSIG(st);
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "pin") && strcmp(argv[1], "free"))) {
        fprintf(stderr, "usage: ctracer pin|free PROGRAM ARGS...\n");
        return 2;
    }
    if (strcmp(argv[1], "pin") == 0) {
        cpu_set_t set;
        int cpu = sched_getcpu();
        if (cpu < 0)
            die("sched_getcpu");
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set)) /* the child inherits it */
            die("sched_setaffinity");
    }

    child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0))
            _exit(126);
        execv(argv[2], argv + 2);
        _exit(127);
    }

    /* The exec's SIGTRAP. */
    int sig = wait_stop();
    if (sig != SIGTRAP)
        fail("expected the exec SIGTRAP, got signal", sig);
    if (ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL))
        die("PTRACE_SETOPTIONS");
    /* Free run through libc's start-up up to the child's SIGSTOP. */
    if (ptrace(PTRACE_CONT, child, 0, 0))
        die("PTRACE_CONT");
    while ((sig = wait_stop()) != SIGSTOP)
        if (ptrace(PTRACE_CONT, child, 0, sig))
            die("PTRACE_CONT");

    /* From here on every syscall is emulated: one stop each. */
    long calls = 0;
    sig = 0; /* suppress the SIGSTOP */
    for (;;) {
        if (ptrace(PTRACE_SYSEMU, child, 0, sig))
            die("PTRACE_SYSEMU");
        sig = wait_stop();
        if (sig != (SIGTRAP | 0x80))
            continue; /* a signal-delivery stop: pass the signal on */
        sig = 0;
        struct user_regs_struct r;
        if (ptrace(PTRACE_GETREGS, child, 0, &r))
            die("PTRACE_GETREGS");
        switch (r.orig_rax) {
        case SYS_getppid:
            r.rax = 4242;
            calls++;
            break;
        case SYS_exit_group:
        case SYS_exit:
            kill(child, SIGKILL);
            waitpid(child, NULL, __WALL);
            fprintf(stderr, "ctracer: %ld getppid\n", calls);
            return (int)(r.rdi & 0xff);
        default:
            fail("unexpected syscall", (long)r.orig_rax);
        }
        if (ptrace(PTRACE_SETREGS, child, 0, &r))
            die("PTRACE_SETREGS");
    }
}
