"""Imports every handler family so that each registers itself."""
from syscalls import files, fs, futex, info, io, mm, net, process, signals, time  # noqa: F401
