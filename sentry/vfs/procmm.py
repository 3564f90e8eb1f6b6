"""/proc/PID/smaps, smaps_rollup, pagemap and coredump_filter: a process's memory as its
MemoryManager records it (areas, VM_* flags) with the platform's residency of each page
(MemoryManager.resident: the host pages behind the guest's)."""
import errno as E

from sentry.errors import Errno
from sentry.mm import (PAGE, VM_DONTCOPY, VM_DONTDUMP, VM_LOCKED, VM_LOCKONFAULT, VM_RAND_READ, VM_SEQ_READ,
                       VM_WIPEONFORK)

# show_smap_vma_flags' mnemonics, in bit order (the bits the record knows of).
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE = 0x10, 0x20, 0x40, 0x80
VM_GROWSDOWN, VM_ACCOUNT = 0x100, 0x100000
MNEMONICS = ((VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"), (VM_MAYREAD, "mr"),
             (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"), (VM_GROWSDOWN, "gd"),
             (VM_LOCKED, "lo"), (VM_SEQ_READ, "sr"), (VM_RAND_READ, "rr"), (VM_DONTCOPY, "dc"),
             (VM_LOCKONFAULT, "lf"), (VM_ACCOUNT, "ac"), (VM_WIPEONFORK, "wf"), (VM_DONTDUMP, "dd"))
# smaps' figures after Rss and Pss, in Linux 6.8's order.
SMAPS_TAIL = ("Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous",
              "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
              "Private_Hugetlb", "Swap", "SwapPss", "Locked")


def vm_flags(v) -> int:
    flags = (v.prot & 7) | VM_MAYREAD | VM_MAYEXEC | (v.flags & ~0xFF)
    if v.shared:
        flags |= VM_SHARED | VM_MAYSHARE | (VM_MAYWRITE if v.maywrite else 0)
    else:
        flags |= VM_MAYWRITE | (VM_ACCOUNT if v.prot & 2 else 0)
    if v.name == "[stack]":
        flags |= VM_GROWSDOWN
    return flags


def figures(mm, v) -> dict:
    """One area's smaps figures in bytes. The platform tells which pages are in memory;
    anonymous ones count as dirty, a file's as clean; pages are the area's own (Pss = Rss)."""
    rss = sum(mm.resident(v.start, v.end)) * PAGE
    anon = v.backing is None and not v.name.startswith("/")
    f = dict.fromkeys(("Rss", "Pss", "Pss_Dirty") + SMAPS_TAIL, 0)
    f["Rss"] = f["Pss"] = f["Referenced"] = rss
    if anon or v.backing is not None and v.name.startswith("/dev/zero"):
        f["Private_Dirty"] = f["Pss_Dirty"] = rss
    else:
        f["Private_Clean"] = rss
    if anon and not v.shared:
        f["Anonymous"] = rss
    if v.flags & VM_LOCKED:
        f["Locked"] = rss
    return f


def _line(name: str, nbytes: int) -> str:
    return "%-16s%8d kB\n" % (name + ":", nbytes >> 10)


def gen_smaps(task, header_lines) -> bytes:
    """header_lines: the /proc/PID/maps lines, one per area of the record (procfs.gen_maps)."""
    mm = getattr(task, "mm", None)
    if mm is None:
        return b""
    out = []
    for v, header in header_lines:
        f = figures(mm, v)
        out.append(header + "\n")
        out.append(_line("Size", v.end - v.start) + _line("KernelPageSize", PAGE) + _line("MMUPageSize", PAGE))
        out.append(_line("Rss", f["Rss"]) + _line("Pss", f["Pss"]) + _line("Pss_Dirty", f["Pss_Dirty"]))
        out.extend(_line(name, f[name]) for name in SMAPS_TAIL)
        out.append("THPeligible:    0\n")
        flags = vm_flags(v)
        out.append("VmFlags: " + "".join(m + " " for bit, m in MNEMONICS if flags & bit) + "\n")
    return "".join(out).encode(errors="replace")


def gen_smaps_rollup(task) -> bytes:
    mm = getattr(task, "mm", None)
    if mm is None or not mm.vmas:
        return b""
    total = dict.fromkeys(("Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem") + SMAPS_TAIL, 0)
    for v in mm.vmas:
        f = figures(mm, v)
        for k, n in f.items():
            total[k] += n
        kind = "Pss_Shmem" if v.shared and v.backing is not None and not v.name.startswith("/") or \
            v.name.startswith("/dev/zero") else "Pss_Anon" if f["Anonymous"] else "Pss_File"
        total[kind] += f["Pss"]
    head = ("%08x-%08x ---p 00000000 00:00 0" % (mm.vmas[0].start, mm.vmas[-1].end)).ljust(72) + " [rollup]\n"
    return (head + "".join(_line(k, n) for k, n in total.items())).encode()


# --- pagemap: 8 bytes per virtual page ------------------------------------------------------------
PM_PRESENT, PM_FILE, PM_MMAP_EXCLUSIVE, PM_SOFT_DIRTY = 1 << 63, 1 << 61, 1 << 56, 1 << 55


def pagemap_entries(mm, offset: int, size: int) -> bytes:
    """pagemap_read: offset and size multiples of 8 (EINVAL otherwise); a present page is
    PM_PRESENT (no frame number: the sandbox has no physical pages to show), unmapped or
    absent ones 0."""
    if offset % 8 or size % 8:
        raise Errno(E.EINVAL)
    first, n = offset // 8, size // 8
    start = first * PAGE
    end = min(start + n * PAGE, 1 << 47)
    out = bytearray(8 * max(0, (end - start) // PAGE))
    for v in mm._within(start, end):
        lo, hi = max(v.start, start), min(v.end, end)
        bits = PM_PRESENT | PM_SOFT_DIRTY | (PM_FILE if v.backing is not None or v.name.startswith("/")
                                             else PM_MMAP_EXCLUSIVE)
        entry = bits.to_bytes(8, "little")
        for i, r in enumerate(mm.resident(lo, hi)):
            if r:
                at = 8 * ((lo - start) // PAGE + i)
                out[at:at + 8] = entry
    return bytes(out)


def pagemap_inode(fs, task):
    """/proc/PID/pagemap (0400): reads at the file offset, nothing generated at open."""
    from sentry.vfs.procfs import GenInode, ProcFile

    class PagemapFile(ProcFile):
        def read(self, size):
            data = self.pread(size, self.offset)
            self.offset += len(data)
            return data

        def pread(self, size, offset):
            if offset < 0:
                raise Errno(E.EINVAL)
            return pagemap_entries(task.mm, offset, size)

    class PagemapInode(GenInode):
        def open(self, flags, path):
            return PagemapFile(self, flags, path, b"", None, E.EINVAL)

    return PagemapInode(fs, lambda: b"", 0o400)


# --- coredump_filter --------------------------------------------------------------------------------
DUMP_FILTER_BITS = 9  # MMF_DUMP_FILTER_BITS


def coredump_filter_inode(fs, task):
    """/proc/PID/coredump_filter (0644): each read from the start sees the filter as it is
    then (proc_coredump_filter_read formats it per read), writes set it."""
    from sentry.vfs.procfs import GenInode, ProcFile

    class FilterFile(ProcFile):
        def pread(self, size, offset):
            self.data = read_coredump_filter(task)
            return super().pread(size, offset)

        def read(self, size):
            if self.offset == 0:
                self.data = read_coredump_filter(task)
            return super().read(size)

    class FilterInode(GenInode):
        def open(self, flags, path):
            return FilterFile(self, flags, path, b"", lambda data: write_coredump_filter(task, data))

    return FilterInode(fs, lambda: b"", 0o644)


def read_coredump_filter(task) -> bytes:
    return b"%08x\n" % getattr(getattr(task, "mm", None), "coredump_filter", 0)


def write_coredump_filter(task, data) -> int:
    """kstrtouint(buf, 0): decimal, 0x hex or 0 octal; the filter's 9 bits are kept."""
    text = bytes(data).strip().decode(errors="replace")
    try:
        value = int(text, 0) if not (len(text) > 1 and text[0] == "0" and text[1].isdigit()) else int(text, 8)
    except ValueError:
        raise Errno(E.EINVAL) from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise Errno(E.ERANGE if value > 0 else E.EINVAL)
    mm = getattr(task, "mm", None)
    if mm is None:
        raise Errno(E.ESRCH)
    mm.coredump_filter = value & ((1 << DUMP_FILTER_BITS) - 1)
    return len(data)

