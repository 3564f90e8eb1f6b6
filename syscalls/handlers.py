"""Imports every handler family so that each registers itself."""
from syscalls import attrs, files, fs, futex, info, io, locks, mm, net, process, sched, signals, time  # noqa: F401
