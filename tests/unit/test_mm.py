"""MemoryManager against a fake address space: the record, placement and EFAULT rules."""
import errno

import pytest

from sentry.errors import Errno
from sentry.mm import (MADV_DONTFORK, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_HUGETLB, MAP_LOCKED,
                       MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, PAGE, PROT_READ, PROT_WRITE, VM_LOCKED,
                       MemoryManager)


class FakeSpace:
    """Pages as a dict; records the calls the MemoryManager makes."""
    reserved = [(0x7FFFF8000000, 0x7FFFF8002000)]

    def __init__(self):
        self.pages = {}
        self.calls = []

    def map(self, start, length, prot):
        self.calls.append(("map", start, length, prot))
        for p in range(start, start + length, PAGE):
            self.pages[p] = bytearray(PAGE)

    def unmap(self, start, length):
        self.calls.append(("unmap", start, length))
        for p in range(start, start + length, PAGE):
            self.pages.pop(p, None)

    def protect(self, start, length, prot):
        self.calls.append(("protect", start, length, prot))

    def move(self, old, old_len, new, new_len):
        saved = [self.pages.pop(p, bytearray(PAGE)) for p in range(old, old + old_len, PAGE)]
        for i, p in enumerate(range(new, new + new_len, PAGE)):
            self.pages[p] = saved[i] if i < len(saved) else bytearray(PAGE)

    def read(self, addr, size):
        out = bytearray()
        while size:
            page, off = addr & ~(PAGE - 1), addr & (PAGE - 1)
            n = min(size, PAGE - off)
            out += self.pages[page][off:off + n]
            addr, size = addr + n, size - n
        return bytes(out)

    def write(self, addr, data):
        pos = 0
        while pos < len(data):
            page, off = (addr + pos) & ~(PAGE - 1), (addr + pos) & (PAGE - 1)
            n = min(len(data) - pos, PAGE - off)
            self.pages[page][off:off + n] = data[pos:pos + n]
            pos += n


RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
TOP = 0x7FFFF7FFF000


@pytest.fixture
def mm():
    return MemoryManager(FakeSpace(), mmap_base=TOP, brk=0x600000)


def test_mmap_is_top_down_below_the_base(mm):
    a = mm.mmap(0, 3 * PAGE, RW, ANON)
    b = mm.mmap(0, PAGE, RW, ANON)
    assert a == TOP - 3 * PAGE and b == a - PAGE


def test_fixed_replaces_and_noreplace_refuses(mm):
    a = mm.mmap(0, 4 * PAGE, RW, ANON)
    mm.write(a, b"x" * 10)
    assert mm.mmap(a + PAGE, PAGE, PROT_READ, ANON | MAP_FIXED) == a + PAGE
    assert [(v.start, v.prot) for v in mm.vmas] == [(a, RW), (a + PAGE, PROT_READ), (a + 2 * PAGE, RW)]
    with pytest.raises(Errno) as e:
        mm.mmap(a, PAGE, RW, ANON | MAP_FIXED_NOREPLACE)
    assert e.value.errno == errno.EEXIST


def test_bad_arguments(mm):
    for args in [(0, 0, RW, ANON), (1, PAGE, RW, ANON | MAP_FIXED), (0, PAGE, RW, MAP_ANONYMOUS),
                 (0, PAGE, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS), (0, PAGE, RW, ANON, None, 1)]:
        with pytest.raises(Errno) as e:
            mm.mmap(*args)
        assert e.value.errno == errno.EINVAL, args


def test_unknown_flags_are_ignored_as_linux_does(mm):
    assert mm.mmap(0, PAGE, RW, ANON | 0x80000000)
    with pytest.raises(Errno) as e:
        mm.mmap(0, 2 << 20, RW, ANON | MAP_HUGETLB)
    assert e.value.errno == errno.ENOMEM  # no huge pages in the sandbox


def test_partial_munmap_splits(mm):
    a = mm.mmap(0, 5 * PAGE, RW, ANON)
    mm.munmap(a + PAGE, 2 * PAGE)
    assert [(v.start, v.end) for v in mm.vmas] == [(a, a + PAGE), (a + 3 * PAGE, a + 5 * PAGE)]
    with pytest.raises(Errno) as e:
        mm.read(a + PAGE, 1)
    assert e.value.errno == errno.EFAULT
    mm.munmap(a + PAGE, 2 * PAGE)  # unmapping a hole is fine


def test_access_checks_protection_across_areas(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON)
    mm.write(a + PAGE - 2, b"abcd")        # spans two areas with the same protection
    assert mm.read(a + PAGE - 2, 4) == b"abcd"
    mm.mprotect(a + PAGE, PAGE, PROT_READ)
    with pytest.raises(Errno):
        mm.write(a + PAGE - 2, b"abcd")
    assert mm.writable_prefix(a + PAGE - 2, 4) == 2
    with pytest.raises(Errno) as e:
        mm.mprotect(a, 4 * PAGE, PROT_READ)
    assert e.value.errno == errno.ENOMEM


def test_cstring(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON)
    mm.write(a + PAGE - 3, b"abcdef\0")
    assert mm.read_cstring(a + PAGE - 3) == b"abcdef"
    mm.write(a, b"x" * (2 * PAGE))
    with pytest.raises(Errno) as e:
        mm.read_cstring(a + PAGE + 10)
    assert e.value.errno == errno.EFAULT   # runs off the end of the mapping
    with pytest.raises(Errno) as e:
        mm.read_cstring(a, limit=100)
    assert e.value.errno == errno.ENAMETOOLONG


def test_brk_grows_shrinks_and_refuses_collisions(mm):
    assert mm.set_brk(0) == 0x600000
    assert mm.set_brk(0x600000 + 10000) == 0x600000 + 10000
    mm.write(0x600000 + 9000, b"z")
    assert mm.set_brk(0x600000 + 10) == 0x600000 + 10
    mm.mmap(0x610000, PAGE, RW, ANON | MAP_FIXED)
    assert mm.set_brk(0x620000) == 0x600000 + 10    # would run into a mapping: refused


def test_mremap_grow_in_place_then_move(mm):
    a = mm.mmap(0x10000000, PAGE, RW, ANON)
    mm.write(a, b"keep")
    assert mm.mremap(a, PAGE, 2 * PAGE, 0, 0) == a
    mm.mmap(a + 2 * PAGE, PAGE, RW, ANON | MAP_FIXED)
    with pytest.raises(Errno) as e:
        mm.mremap(a, 2 * PAGE, 4 * PAGE, 0, 0)
    assert e.value.errno == errno.ENOMEM
    b = mm.mremap(a, 2 * PAGE, 4 * PAGE, 1, 0)
    assert b != a and mm.read(b, 4) == b"keep"
    with pytest.raises(Errno):
        mm.read(a, 1)


def test_madvise_dontneed_zeroes(mm):
    a = mm.mmap(0, 2 * PAGE, RW, ANON)
    mm.write(a, b"data")
    mm.madvise(a, PAGE, 4)
    assert mm.read(a, 4) == bytes(4)
    with pytest.raises(Errno) as e:
        mm.madvise(a, PAGE, 7)
    assert e.value.errno == errno.EINVAL


def test_reserved_ranges_are_never_given_out(mm):
    with pytest.raises(Errno):
        mm.mmap(0x7FFFF8000000, PAGE, RW, ANON | MAP_FIXED)
    assert not mm.is_free(0x7FFFF8000000, 0x7FFFF8001000)


# --- shared mappings: the record keeps the backing and its offsets --------------------------------
class FakeBacking:
    memory, writable = True, True

    def __init__(self):
        self.calls = []

    def cover(self, end):
        self.calls.append(("cover", end))

    def sync(self):
        self.calls.append(("sync",))

    def punch(self, offset, length):
        self.calls.append(("punch", offset, length))


class SharedSpace(FakeSpace):
    def map_file(self, start, length, prot, backing, offset):
        self.calls.append(("map_file", start, length, prot, offset))
        for p in range(start, start + length, PAGE):
            self.pages[p] = bytearray(PAGE)

    def move(self, *args):
        raise AssertionError("shared pages are never moved, only mapped again")


@pytest.fixture
def smm():
    return MemoryManager(SharedSpace(), mmap_base=TOP, brk=0x600000)


def shared_area(mm, length, offset=0, maywrite=True, prot=RW, at=0x10000000):
    b = FakeBacking()
    mm.map_shared(at, length, prot, b, offset, "/f", maywrite)
    return at, b


def test_shared_area_is_recorded_with_offsets(smm):
    a, b = shared_area(smm, 4 * PAGE, offset=2 * PAGE)
    assert ("cover", 6 * PAGE) in b.calls
    assert smm.space.calls[-1] == ("map_file", a, 4 * PAGE, RW, 2 * PAGE)
    smm.munmap(a + PAGE, PAGE)
    left, right = smm.vmas[smm._find(a)], smm.vmas[smm._find(a + 2 * PAGE)]
    assert (left.backing, left.offset, right.backing, right.offset) == (b, 2 * PAGE, b, 4 * PAGE)
    assert right.shared and right.name == "/f"


def test_shared_area_of_a_read_only_file_never_becomes_writable(smm):
    a, b = shared_area(smm, 2 * PAGE, maywrite=False, prot=PROT_READ)
    for call in (lambda: smm.mprotect(a, PAGE, RW), lambda: smm.madvise(a, PAGE, 9)):
        with pytest.raises(Errno) as e:
            call()
        assert e.value.errno == errno.EACCES
    with pytest.raises(Errno) as e:
        smm.map_shared(a, PAGE, RW, b, 0, "/f", False)
    assert e.value.errno == errno.EACCES
    smm.mprotect(a, PAGE, PROT_READ)  # no write: fine


def test_shared_area_moves_by_mapping_again(smm):
    a, b = shared_area(smm, 2 * PAGE, offset=PAGE)
    smm.mmap(a + 2 * PAGE, PAGE, RW, ANON | MAP_FIXED)  # in the way of growing in place
    new = smm.mremap(a + PAGE, PAGE, 3 * PAGE, 1, 0)  # the second page, grown: moved
    v = smm.vmas[smm._find(new)]
    assert (v.backing, v.offset, v.end - v.start) == (b, 2 * PAGE, 3 * PAGE)
    assert ("map_file", new, 3 * PAGE, RW, 2 * PAGE) in smm.space.calls
    assert ("unmap", a + PAGE, PAGE) in smm.space.calls


def test_shared_area_grows_in_place_from_the_next_file_pages(smm):
    a, b = shared_area(smm, 2 * PAGE, offset=PAGE)
    assert smm.mremap(a, 2 * PAGE, 3 * PAGE, 0, 0) == a
    assert ("map_file", a + 2 * PAGE, PAGE, RW, 3 * PAGE) in smm.space.calls
    assert ("cover", 4 * PAGE) in b.calls
    v = smm.vmas[smm._find(a)]
    assert (v.start, v.end, v.offset) == (a, a + 3 * PAGE, PAGE)


def test_madvise_on_shared_areas(smm):
    a, b = shared_area(smm, 2 * PAGE, offset=PAGE)
    calls = len(smm.space.calls)
    smm.madvise(a, 2 * PAGE, 4)  # DONTNEED: the file's bytes stay
    assert len(smm.space.calls) == calls
    smm.madvise(a + PAGE, PAGE, 9)  # REMOVE: punched in the file
    assert ("punch", 2 * PAGE, PAGE) in b.calls
    p = smm.mmap(0, PAGE, RW, ANON)
    with pytest.raises(Errno) as e:
        smm.madvise(p, PAGE, 9)  # private anonymous: EINVAL, as Linux
    assert e.value.errno == errno.EINVAL


def test_msync(smm):
    a, b = shared_area(smm, 2 * PAGE)
    smm.msync(a, 2 * PAGE, 4)
    assert b.calls[-1] == ("sync",)
    smm.msync(a, 0, 4)
    for args, err in [((a + 1, PAGE, 4), errno.EINVAL), ((a, PAGE, 8), errno.EINVAL),
                      ((a, PAGE, 5), errno.EINVAL), ((a, 3 * PAGE, 1), errno.ENOMEM)]:
        with pytest.raises(Errno) as e:
            smm.msync(*args)
        assert e.value.errno == err, args


def test_shared_anonymous_memory_is_a_memory_backing(smm):
    from sentry.mm import MAP_SHARED
    a = smm.mmap(0, 3 * PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    v = smm.vmas[smm._find(a)]
    assert v.shared and v.backing is not None and v.backing.memory and v.offset == 0
    assert v.name == "/dev/zero (deleted)" and v.backing.host_size >= 3 * PAGE


def test_areas_merge_as_linux_and_split_by_lock_flags(mm):
    a = mm.mmap(0, 4 * PAGE, RW, ANON)
    b = mm.mmap(a - 4 * PAGE, 4 * PAGE, RW, ANON | MAP_FIXED)
    assert b == a - 4 * PAGE and mm.map_count() == 1  # adjacent anonymous areas merge
    mm.lock(b + PAGE, b + 2 * PAGE, VM_LOCKED)
    assert mm.map_count() == 3 and mm.locked_bytes() == PAGE
    mm.lock(b, b + 8 * PAGE, 0)
    assert mm.map_count() == 1 and mm.locked_bytes() == 0


def test_max_map_count_refuses_new_areas_and_middle_splits(mm):
    class Knobs:
        max_map_count = 3
    mm.sysctl = Knobs()
    addrs = []
    with pytest.raises(Errno) as e:
        for i in range(10):
            addrs.append(mm.mmap(0x100000000 + 2 * i * PAGE, PAGE, PROT_READ if i % 2 else RW, ANON | MAP_FIXED))
    assert e.value.errno == errno.ENOMEM and mm.map_count() == 4  # do_mmap checks count > max
    big = mm.vmas[0]
    with pytest.raises(Errno):
        mm.mmap(0x200000000, 3 * PAGE, RW, ANON | MAP_FIXED)
    mm.sysctl.max_map_count = 5
    m = mm.mmap(0x200000000, 3 * PAGE, RW, ANON | MAP_FIXED)
    with pytest.raises(Errno) as e:
        mm.munmap(m + PAGE, PAGE)  # a hole in the middle would make a sixth area
    assert e.value.errno == errno.ENOMEM and big is mm.vmas[0]
    mm.munmap(m, PAGE)  # cutting an end is fine


def test_fork_drops_locks_and_dontfork_areas_and_wipes(mm):
    a = mm.mmap(0, PAGE, RW, ANON | MAP_LOCKED)
    b = mm.mmap(0, PAGE, PROT_READ, ANON)
    mm.madvise(b, PAGE, MADV_DONTFORK)
    child = mm.forked(FakeSpace())
    assert child.locked_bytes() == 0 and mm.locked_bytes() == PAGE
    assert child._find(b) < 0 and child._find(a) >= 0
