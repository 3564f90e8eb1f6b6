"""What the sandbox does not offer, answered as Linux answers it: a feature the
kernel was built without (ENOSYS, which programs take as "not here" and work
around), an operation on the machine itself that needs a capability no task of
the sandbox has (EPERM), or a call that Linux itself never implemented. Each
answer is silent (no "unsupported syscall" note) and listed with its reason in
`sentry syscalls`."""
import errno as E

from sentry.errors import Errno
from syscalls.abi import s32
from syscalls.registry import refuse, syscall

# --- kernel features the sandbox is built without --------------------------------------------------
_WITHOUT = {
    "CONFIG_IO_URING (callers fall back to ordinary reads and writes)":
        ("io_uring_setup", "io_uring_enter", "io_uring_register"),
    "CONFIG_PERF_EVENTS": ("perf_event_open",),
    "CONFIG_BPF_SYSCALL": ("bpf",),
    "CONFIG_USERFAULTFD": ("userfaultfd",),
    "CONFIG_MODIFY_LDT_SYSCALL (64-bit programs never need a local descriptor table)": ("modify_ldt",),
    "secret memory (secretmem.enable=0, Linux's default)": ("memfd_secret",),
    "CONFIG_SECURITY_LANDLOCK (programs that sandbox themselves with it run on without)":
        ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"),
    "CONFIG_USELIB": ("uselib",),
    "CONFIG_QUOTA": ("quotactl", "quotactl_fd"),
    "CONFIG_X86_USER_SHADOW_STACK (no user shadow stacks)": ("map_shadow_stack",),
}
# Calls added after the kernel the sandbox presents (uname: 6.8): ENOSYS there too.
_NEWER = ("mseal",)
# Table entries Linux itself answers with sys_ni_syscall, or calls it removed.
_NEVER = ("afs_syscall", "tuxcall", "security", "vserver", "getpmsg", "putpmsg", "create_module",
          "get_kernel_syms", "query_module", "nfsservctl", "epoll_ctl_old", "epoll_wait_old", "_sysctl",
          "lookup_dcookie")

for _reason, _names in _WITHOUT.items():
    for _name in _names:
        refuse(_name, E.ENOSYS, "as a kernel built without " + _reason)
for _name in _NEWER:
    refuse(_name, E.ENOSYS, "newer than the Linux the sandbox presents (6.8)")
for _name in _NEVER:
    refuse(_name, E.ENOSYS, "not implemented by Linux either")
# x86's TLS descriptors: x86-64 Linux answers a 64-bit program ENOSYS (they are ia32 programs')
for _name in ("set_thread_area", "get_thread_area"):
    refuse(_name, E.ENOSYS, "x86-64 Linux answers a 64-bit program so (32-bit programs' TLS descriptors)")

# --- operations on the machine: a capability no task of the sandbox has -------------------------
_PRIVILEGED = {
    "CAP_SYS_ADMIN: pivot_root is not offered (mount(2): syscalls/mount.py, fsopen(2): syscalls/newmount.py)":
        ("pivot_root",),
    "CAP_SYS_ADMIN: no swap": ("swapon", "swapoff"),
    "CAP_SYS_BOOT": ("kexec_load", "kexec_file_load"),
    "CAP_SYS_MODULE: no kernel modules": ("init_module", "finit_module", "delete_module"),
}
for _reason, _names in _PRIVILEGED.items():
    for _name in _names:
        refuse(_name, E.EPERM, "without " + _reason if _reason.startswith("CAP_") else _reason)


# x86's I/O port access: asking for none succeeds, anything more needs CAP_SYS_RAWIO.
IO_BITMAP_BITS = 65536


@syscall("iopl", note="level 0 (what every process has) succeeds; more EPERM (no CAP_SYS_RAWIO); EINVAL past 3")
def iopl(t, level):
    level = level & 0xFFFFFFFF
    if level > 3:
        raise Errno(E.EINVAL)
    if level:
        raise Errno(E.EPERM)
    return 0


@syscall("ioperm", note="turning ports off succeeds (none is on); turning them on EPERM (no CAP_SYS_RAWIO)")
def ioperm(t, start, num, turn_on):
    if start + num <= start or start + num > IO_BITMAP_BITS:
        raise Errno(E.EINVAL)
    if s32(turn_on):
        raise Errno(E.EPERM)
    return 0
