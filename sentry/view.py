"""The filesystem view a sandbox starts with (DESIGN.md, "What the user types"):
the host's system directories read-only, a fresh memory /tmp, the program's
own directory read-only, the user's --mount grants, and nothing else."""
import os

from sentry.errors import SentryError
from sentry.vfs.hostfs import HostFS

SYSTEM_DIRS = ("usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin", "etc")
# A program living directly in one of these gets only its own file, never the directory.
NOT_LENDABLE = ("/", "/tmp", "/dev", "/proc", "/home", "/root")


def parse_mount(spec: str) -> tuple[str, str, bool]:
    """HOST:GUEST[:ro|rw] -> (host, guest, readonly); read-only unless rw."""
    parts = spec.split(":")
    mode = "ro"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or mode not in ("ro", "rw") or not all(parts):
        raise SentryError(f"--mount {spec}: expected HOST:GUEST[:ro|rw]")
    host, guest = parts
    if not guest.startswith("/"):
        raise SentryError(f"--mount {spec}: the guest path must be absolute")
    return os.path.abspath(host), os.path.normpath(guest), mode == "ro"


def build_default_view(vfs, program: str, data: bytes, mounts=()) -> None:
    for name in SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            vfs.add_symlink(host.encode(), os.fsencode(os.readlink(host)))
        elif os.path.isdir(host):
            vfs.mount(host.encode(), HostFS(host, readonly=True).root)
    directory = os.path.dirname(program)
    covered = any(directory == "/" + n or directory.startswith("/" + n + "/") for n in SYSTEM_DIRS)
    if not covered:
        if directory in NOT_LENDABLE:
            vfs.add_file(program, data)
        else:
            vfs.mount(os.fsencode(directory), HostFS(directory, readonly=True).root)
    for spec in mounts:
        host, guest, readonly = parse_mount(spec)
        if not os.path.isdir(host):
            raise SentryError(f"--mount {spec}: {host} is not a directory (only directories can be mounted)")
        try:
            vfs.mount(os.fsencode(guest), HostFS(host, readonly).root)
        except OSError as e:
            raise SentryError(f"--mount {spec}: {e.strerror}") from None
