"""What the System V IPC calls share of the ABI: struct ipc64_perm (the same 48
bytes on x86-64 and aarch64) and the reading of an IPC_SET buffer. The calls
themselves are syscalls/shm.py, msg.py and sem.py; the objects sentry/ipc/."""
import struct

IPC64_PERM = struct.Struct("<iIIIIIHH4xQQ")  # key, uid, gid, cuid, cgid, mode, seq, pad, unused x2


def pack_perm(perm) -> bytes:
    """kernel_to_ipc64_perm."""
    return IPC64_PERM.pack(perm.key, perm.uid, perm.gid, perm.cuid, perm.cgid, perm.mode, perm.seq & 0xFFFF,
                           0, 0, 0)


def read_set_perm(mm, addr: int, size: int):
    """(uid, gid, mode, the whole buffer) of an IPC_SET argument of size bytes (EFAULT
    unless all of it is readable, as copy_from_user of the struct)."""
    raw = mm.read(addr, size)
    _, uid, gid, _, _, mode, _, _, _, _ = IPC64_PERM.unpack_from(raw, 0)
    return uid, gid, mode, raw
