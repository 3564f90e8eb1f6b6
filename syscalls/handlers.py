"""Imports every handler family so that each registers itself."""
from syscalls import (attrs, clone, creds, epoll, files, fs, futex, info, io, locks, mm, net, pidfd, pipes,  # noqa: F401
                      poll, process, rusage, sched, signals, time, wait)
from syscalls import eventfd, signalfd, timerfd  # noqa: F401,E402
from syscalls import mempolicy, namespaces, seccomp, splice, tty, unoffered  # noqa: F401,E402
from syscalls import mqueue, msg, sem, shm  # noqa: F401,E402  (IPC: sentry/ipc)
from syscalls import keys, xattr  # noqa: F401,E402
from syscalls import fanotify, inotify  # noqa: F401,E402
from syscalls import acct, aio, chroot, crossproc, futex2, kcmp, legacy  # noqa: F401,E402  (issue 13)
from syscalls import cachestat, lsm, mounts  # noqa: F401,E402  (newer kernels: 6.5-6.8)
from syscalls import fhandle  # noqa: F401,E402  (name_to_handle_at, open_by_handle_at)
from syscalls import mount, newmount  # noqa: F401,E402  (mount(2), umount2(2), fsopen(2) and its family)
from syscalls import ptrace  # noqa: F401,E402
