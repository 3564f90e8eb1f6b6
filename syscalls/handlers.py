"""Imports every handler family so that each registers itself."""
from syscalls import (attrs, clone, files, fs, futex, info, io, locks, mm, net, pidfd, pipes, poll,  # noqa: F401
                      process, rusage, sched, signals, time, wait)
