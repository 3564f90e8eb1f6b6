"""The sandbox kernel's build configuration, as /proc/config.gz shows it (CONFIG_IKCONFIG_PROC):
what the sentry implements is `=y`, what it answers as a kernel built without it is "is not set"
(syscalls/unoffered.py), so a program (LTP's tst_kconfig, a container runtime's check) that
reads the configuration learns what the sandbox is, never what the host was built with."""
import gzip

# Set: each backed by the sentry's own implementation of the feature.
BUILT_IN = (
    "64BIT", "X86_64", "MMU", "SMP", "MULTIUSER", "SYSVIPC", "SYSVIPC_SYSCTL", "POSIX_MQUEUE",
    "BSD_PROCESS_ACCT", "BSD_PROCESS_ACCT_V3", "CROSS_MEMORY_ATTACH", "FHANDLE", "POSIX_TIMERS",
    "FUTEX", "FUTEX_PI", "EPOLL", "SIGNALFD", "TIMERFD", "EVENTFD", "AIO", "ADVISE_SYSCALLS",
    "MEMBARRIER", "KCMP", "RSEQ", "CHECKPOINT_RESTORE", "NAMESPACES", "UTS_NS", "TIME_NS", "IPC_NS",
    "USER_NS", "PID_NS", "NET_NS", "MNT_NS", "CGROUPS", "KEYS", "INOTIFY_USER", "FANOTIFY",
    "FILE_LOCKING", "TMPFS", "TMPFS_XATTR", "TMPFS_POSIX_ACL", "PROC_FS", "PROC_SYSCTL", "SYSFS",
    "DEVTMPFS", "UNIX", "INET", "IPV6", "SECCOMP", "SECCOMP_FILTER",
    "IKCONFIG", "IKCONFIG_PROC", "BINFMT_ELF", "BINFMT_SCRIPT", "HIGH_RES_TIMERS",
    "NO_HZ", "PRINTK", "UNIX98_PTYS", "TTY", "SHMEM", "MEMFD_CREATE", "SECURITY",
    "HUGETLBFS", "HUGETLB_PAGE",  # with no huge pages reserved (ENOMEM), as a stock host's default
)
# Not set: the sandbox answers their calls as a kernel built without them.
NOT_SET = (
    "IO_URING", "PERF_EVENTS", "BPF_SYSCALL", "USERFAULTFD", "MODIFY_LDT_SYSCALL", "USELIB", "QUOTA",
    "X86_USER_SHADOW_STACK", "SECURITY_LANDLOCK",
    "OVERLAY_FS", "KVM", "PREEMPT_RT", "ZRAM", "SQUASHFS", "TUN", "RT_GROUP_SCHED", "KASAN",
    "LOCKDEP", "PROVE_LOCKING", "FAULT_INJECTION", "DEBUG_OBJECTS",
)
# (Options the sandbox answers otherwise than either way, e.g. swapon's EPERM, are not listed.)


def text() -> bytes:
    lines = ["#", "# sentry: the sandbox kernel's configuration", "#"]
    lines += [f"CONFIG_{name}=y" for name in BUILT_IN]
    lines += [f"# CONFIG_{name} is not set" for name in NOT_SET]
    return ("\n".join(lines) + "\n").encode()


_GZ = []


def config_gz() -> bytes:
    """/proc/config.gz's bytes (made once: mtime 0, so the same in every sandbox)."""
    if not _GZ:
        _GZ.append(gzip.compress(text(), mtime=0))
    return _GZ[0]
