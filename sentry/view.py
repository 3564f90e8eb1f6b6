"""The filesystem view a sandbox starts with (DESIGN.md, "What the user types"):
the host's system directories read-only (but for /etc's identity files: the
sandbox's own), a fresh memory /tmp, a memory home,
the host's current directory read-only at its own path, the user's --mount
grants, the program's own directory if the sandbox would not see it otherwise,
and nothing else.

A view is built once and laid on two VFSes: a probe, where the working
directory and PROGRAM are looked up (the platform, and so the kernel, depend on
the program found), and then the kernel's own."""
import errno as E
import os

from sentry.errors import Errno, SentryError
from sentry.vfs import VFS
from sentry.vfs.hostfs import HostFS
from sentry.vfs.hostids import InodeNumbers

SYSTEM_DIRS = ("usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin", "etc")
# A program living directly in one of these gets only its own file, never the directory.
NOT_LENDABLE = ("/", "/tmp", "/dev", "/proc", "/home", "/root")
# The sandbox's own (or, for /sys, none): a current directory under them is never lent.
KERNEL_DIRS = ("/dev", "/proc", "/sys")
HOME = "/root"  # the sandbox's user is root (sentry/task.py): its home, in the sandbox's memory


def _under(path: str, tops) -> bool:
    return any(path == top or path.startswith(top + "/") for top in tops)


class View:
    """The parts of a sandbox's filesystem, in the order they are laid."""

    def __init__(self, root=None, numbers=None):
        self.root = root  # the tree under everything: --rootfs's overlay, or None for memory
        # the sandbox's numbering of host files, shared by every host directory it lends
        self.numbers = numbers if numbers is not None else InodeNumbers()
        self._steps = []
        self.probe = VFS(os.urandom, root=root)
        self.etc = None  # the default view's EtcIdentity

    def _add(self, fn, *args) -> None:
        self._steps.append((fn, args))
        fn(self.probe, *args)

    def lay(self, vfs) -> None:
        """Build the view on vfs (a kernel's, made with root=self.root)."""
        for fn, args in self._steps:
            fn(vfs, *args)

    def mount(self, path: str, root) -> None:
        self._add(VFS.mount, os.fsencode(path), root)

    def symlink(self, path: str, target: str) -> None:
        self._add(VFS.add_symlink, os.fsencode(path), os.fsencode(target))

    def file(self, path: str, data: bytes) -> None:
        self._add(VFS.add_file, path, data)

    def home(self) -> None:
        self._add(_make_home)

    def lookup(self, path: str, cwd: str = "/", follow: bool = True):
        """The inode at path in the view (relative to cwd), or Errno."""
        probe = self.probe
        try:
            start = probe.root_loc if path.startswith("/") else probe.lookup_loc(None, -100, os.fsencode(cwd))
            found = probe.walk(None, start, os.fsencode(path), follow)
        except AttributeError:  # a /proc name that needs a task: the probe runs none
            raise Errno(E.ENOENT) from None
        if found.inode is None:
            raise Errno(E.ENOENT)
        return found.inode

    def sees(self, path: str, follow: bool = True) -> bool:
        try:
            self.lookup(path, follow=follow)
            return True
        except Errno:
            return False


def _make_home(vfs) -> None:
    """HOME: an existing, writable, private directory (kept if --rootfs has one)."""
    root, name = vfs.root, HOME.lstrip("/").encode()
    try:
        if root.lookup(name) is None:
            root.mkdir(name, 0o700)
    except Errno:
        pass  # a rootfs whose /root is not a directory: HOME names what it has


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


def default_view() -> View:
    """The host's system directories read-only, their top-level symlinks, and HOME;
    /etc's identity files the sandbox's own (EtcIdentity)."""
    view = View()
    for name in SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            view.symlink(host, os.readlink(host))
        elif os.path.isdir(host):
            fs = HostFS(host, readonly=True, numbers=view.numbers)
            if name == "etc":
                view.etc = EtcIdentity(fs)
                view._add(view.etc.lay)
            view.mount(host, fs.root)
    view.home()
    return view


class EtcIdentity:
    """The names of the default view's /etc that would tell the host (its name, its
    machine id, its network's resolvers and hosts: issue 15) are the sandbox's own,
    read-only files of /etc's filesystem; the rest of /etc stays the host's (passwd,
    ld.so.cache, ssl, ...):
    - hostname: the sandbox's hostname when it starts (as Linux's, unchanged by sethostname);
    - machine-id: random per sandbox (from --seed's source when given), systemd's format;
    - hosts: localhost and the sandbox's hostname on its own loopback;
    - resolv.conf: none (no network to resolve on; --net host lends the host's: host_resolver);
    - mtab: a link to /proc/self/mounts."""

    def __init__(self, etc: HostFS):
        self.etc = etc
        self.own = {b"hostname", b"machine-id", b"hosts", b"resolv.conf", b"mtab"}

    def lay(self, vfs) -> None:
        """Fill the files for the VFS laid (the probe's, then the kernel's: its hostname
        and random source)."""
        from sentry.vfs.inode import RegularInode, SymlinkInode
        kernel = vfs.kernel
        hostname = kernel.hostname if kernel is not None else b"sentry"
        raw = bytearray(vfs.random_bytes(16))
        raw[6], raw[8] = raw[6] & 0x0F | 0x40, raw[8] & 0x3F | 0x80  # a v4 UUID, as systemd makes one
        files = {
            b"hostname": RegularInode(0o644, hostname + b"\n", fs=self.etc),
            b"machine-id": RegularInode(0o444, raw.hex().encode() + b"\n", fs=self.etc),
            b"hosts": RegularInode(0o644, b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                   b"127.0.1.1\t%s\n" % hostname, fs=self.etc),
            b"resolv.conf": None,
            b"mtab": SymlinkInode(b"/proc/self/mounts", fs=self.etc),
        }
        for i, (name, inode) in enumerate(files.items()):
            if inode is not None:  # numbered as the host files beside them
                inode.ino = self.etc.numbers.number(-1, i)
        self.etc.replaced = {name: inode for name, inode in files.items() if name in self.own}

    def lend(self, name: bytes) -> None:
        """The host's own file at name after all (--net host's resolver files)."""
        self.own.discard(name)
        self.etc.replaced.pop(name, None)


def rootfs_view(rootfs: str) -> View:
    """--rootfs DIR: the directory as a read-only lower under a memory upper."""
    from sentry.vfs.overlay import OverlayFS
    if not os.path.isdir(rootfs):
        raise SentryError(f"--rootfs {rootfs}: not a directory")
    try:
        numbers = InodeNumbers()
        view = View(OverlayFS(HostFS(os.path.abspath(rootfs), readonly=True, numbers=numbers).root).root, numbers)
    except Errno as e:
        raise SentryError(f"--rootfs {rootfs}: {os.strerror(e.errno)}") from None
    view.home()
    return view


def lend_cwd(view: View, cwd: str) -> str:
    """Lend the host's current directory at its own path, read-only; the working
    directory the sandbox gets for it. Not lent: `/` (never the whole host: the
    sandbox's own /), /tmp (the sandbox's memory one), /dev, /proc and /sys (the
    sandbox's own: the same path if it has it, else /), a system directory (already
    there). HOME is lent as an overlay, so that it stays writable (in memory)."""
    if cwd in ("/", "/tmp") or _under(cwd, ["/" + n for n in SYSTEM_DIRS]):
        return cwd
    if _under(cwd, KERNEL_DIRS):
        try:
            return cwd if view.lookup(cwd).is_dir() else "/"
        except Errno:
            return "/"
    try:
        lent = HostFS(cwd, readonly=True, lent=True, numbers=view.numbers).root
        if cwd == HOME:
            from sentry.vfs.overlay import OverlayFS
            lent = OverlayFS(lent).root
    except Errno as e:
        raise SentryError(f"the current directory {cwd}: {os.strerror(e.errno)} (--no-cwd runs without it)") from None
    view.mount(cwd, lent)  # under /tmp: inside the sandbox's memory /tmp (mounts nest)
    return cwd


def add_mounts(view: View, mounts) -> None:
    for spec in mounts:  # "HOST:GUEST[:ro|rw]", or (host, guest, readonly) from the API's Mount
        host, guest, readonly = parse_mount(spec) if isinstance(spec, str) else spec
        if not os.path.isdir(host):
            raise SentryError(f"--mount {spec}: {host} is not a directory (only directories can be mounted)")
        try:
            view.mount(guest, HostFS(host, readonly, lent=True, numbers=view.numbers).root)
        except (Errno, OSError) as e:
            raise SentryError(f"--mount {spec}: {os.strerror(e.errno)}") from None


def lend_program(view: View, program: str, read) -> None:
    """An absolute host path the view does not show: its directory, read-only, unless
    the sandbox has that directory from elsewhere (a system directory, a --mount); in a
    directory that is never lent, the file alone (read(path) gives its bytes), or for a
    symlink a link. A program named by a symlink runs as its target (/proc/self/exe,
    ld.so's $ORIGIN: /usr/bin/java finds libjli.so beside the real binary), so the
    target's directory is lent too."""
    real = os.path.realpath(program)
    for path in dict.fromkeys((program, real)):
        if view.sees(path, follow=False):
            continue
        directory = os.path.dirname(path)
        if directory in NOT_LENDABLE:
            if path != real:
                view.symlink(path, real)
            else:
                view.file(path, read(path))
        elif not view.sees(directory):
            try:
                view.mount(directory, HostFS(directory, readonly=True, lent=True, numbers=view.numbers).root)
            except Errno as e:
                raise SentryError(f"{directory}: {os.strerror(e.errno)}", 126) from None


RESOLVER_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf")


def host_resolver(view: View) -> None:
    """--net host: the host's resolver configuration in the view (a --rootfs's own /etc,
    or the default view's own hosts and no resolv.conf, would otherwise name resolvers the
    host may not reach): the default view lends the host's files, a --rootfs gets them
    copied as they are at start."""
    if view.etc is not None:
        for path in RESOLVER_FILES:
            view.etc.lend(os.fsencode(os.path.basename(path)))
        return
    for path in RESOLVER_FILES:
        try:
            with open(path, "rb") as f:
                view._add(_put_file, path, f.read())
        except OSError:
            pass  # the host has none: the sandbox's own (or none) stays


def _put_file(vfs, path: str, data: bytes) -> None:
    """A memory file at path, over what the rootfs has there (in the overlay's upper layer)."""
    from sentry.vfs.inode import RegularInode
    parent, _, name = path.encode().rpartition(b"/")
    d = vfs.makedirs(parent)
    if hasattr(d, "copy_up"):
        if d.lookup(name) is not None:
            d.unlink(name)
        d = d.copy_up()
    d.add(name, RegularInode(0o644, data))
