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
    # A program named by a symlink runs as its target (/proc/self/exe, ld.so's $ORIGIN:
    # /usr/bin/java finds libjli.so beside the real binary), so that is lent too.
    real = os.path.realpath(program)
    _lend_program(vfs, program, data, link_to=real if real != program else None)
    if real != program:
        _lend_program(vfs, real, data)
    add_mounts(vfs, mounts)


def _lend_program(vfs, program: str, data: bytes, link_to: str = None) -> None:
    """The program's directory, read-only, unless a system directory holds it already;
    in a directory that is not lent, the file alone (or, for a symlink, a link to link_to)."""
    directory = os.path.dirname(program)
    if any(directory == "/" + n or directory.startswith("/" + n + "/") for n in SYSTEM_DIRS):
        return
    if directory not in NOT_LENDABLE:
        vfs.mount(os.fsencode(directory), HostFS(directory, readonly=True).root)
    elif link_to is not None:
        vfs.add_symlink(os.fsencode(program), os.fsencode(link_to))
    else:
        vfs.add_file(program, data)


def add_mounts(vfs, mounts) -> None:
    for spec in mounts:
        host, guest, readonly = parse_mount(spec)
        if not os.path.isdir(host):
            raise SentryError(f"--mount {spec}: {host} is not a directory (only directories can be mounted)")
        try:
            vfs.mount(os.fsencode(guest), HostFS(host, readonly).root)
        except OSError as e:
            raise SentryError(f"--mount {spec}: {e.strerror}") from None


def rootfs_root(rootfs: str):
    """--rootfs DIR: the directory as a read-only lower under a memory upper."""
    from sentry.vfs.overlay import OverlayFS
    if not os.path.isdir(rootfs):
        raise SentryError(f"--rootfs {rootfs}: not a directory")
    try:
        return OverlayFS(HostFS(os.path.abspath(rootfs), readonly=True).root).root
    except OSError as e:
        raise SentryError(f"--rootfs {rootfs}: {e.strerror}") from None


def rootfs_program(root, program: str, search_path: str) -> tuple[str, bytes]:
    """PROGRAM as a path inside the root filesystem (a bare name searched in PATH
    there), and its bytes, read through the sandbox's own walk."""
    import stat as S

    from sentry.errors import Errno
    from sentry.kernel import Kernel
    from sentry.vfs import VFS
    probe = VFS(os.urandom, root=root)
    candidates = [program] if "/" in program else [f"{d}/{program}" for d in search_path.split(":") if d]
    for candidate in candidates:
        path = candidate if candidate.startswith("/") else "/" + candidate
        try:
            inode = probe.lookup(None, -100, path.encode())
        except Errno:
            continue
        if not S.S_ISREG(inode.mode):
            raise SentryError(f"{path}: not a regular file in the root filesystem", 126)
        return path, Kernel.read_whole(inode, path)
    raise SentryError(f"{program}: not found in the root filesystem", 127)
