"""Linux AIO contexts: one per io_setup, kept by the address space that made it (as
Linux's mm->ioctx_table), each with its completion ring mapped into that address space
in Linux's layout (struct aio_ring, then io_events), which libaio reads directly.

Operations are done when they are submitted, through the sandbox's own files (Linux
does buffered AIO synchronously too); only IOCB_CMD_POLL stays pending until its file
is ready or it is cancelled. A completion is written to the ring at its tail; the
context's queue wakes io_getevents waiters."""
import struct

from sentry.sched import WaitQueue

AIO_RING_MAGIC = 0xA10A10A1
AIO_RING_COMPAT_FEATURES = 1
RING_HEADER = struct.Struct("<IIIIIIII")  # id, nr, head, tail, magic, compat, incompat, header_length
IO_EVENT = struct.Struct("<QQqq")  # data, obj, res, res2
PAGE = 4096
AIO_MAX_NR = 65536  # /proc/sys/fs/aio-max-nr
NCPUS = 2


class AioContext:
    def __init__(self, mm, addr: int, ring_nr: int, max_reqs: int):
        self.mm = mm
        self.addr = addr              # the ring's address: the context's id, as Linux
        self.ring_nr = ring_nr        # io_events the ring holds
        self.max_reqs = max_reqs      # requests in flight at most (what aio-nr counts)
        self.in_flight = 0            # submitted and not yet read by io_getevents
        self.polls = []               # pending IOCB_CMD_POLL: (iocb address, data, file, events)
        self.queue = WaitQueue()      # io_getevents waiters
        self.dead = False

    # --- the ring in the process's memory ----------------------------------------------------
    def _header(self):
        return list(RING_HEADER.unpack(self.mm.read(self.addr, RING_HEADER.size)))

    def complete(self, obj: int, data: int, res: int, res2: int = 0) -> None:
        """An io_event at the ring's tail."""
        head = self._header()
        tail = head[3] % self.ring_nr
        self.mm.write(self.addr + RING_HEADER.size + IO_EVENT.size * tail, IO_EVENT.pack(data, obj, res, res2))
        self.mm.write(self.addr + 12, struct.pack("<I", (tail + 1) % self.ring_nr))
        self.queue.notify()

    def available(self) -> int:
        head = self._header()
        return (head[3] - head[2]) % self.ring_nr

    def take(self, limit: int) -> bytes:
        """Up to limit io_events from the ring's head, which moves past them."""
        hdr = self._header()
        head, tail = hdr[2] % self.ring_nr, hdr[3] % self.ring_nr
        out = []
        while head != tail and len(out) < limit:
            out.append(self.mm.read(self.addr + RING_HEADER.size + IO_EVENT.size * head, IO_EVENT.size))
            head = (head + 1) % self.ring_nr
        self.mm.write(self.addr + 8, struct.pack("<I", head))
        self.in_flight -= len(out)
        return b"".join(out)


def ring_size(nr_events: int):
    """(bytes to map, io_events the ring holds, requests allowed) as Linux's ioctx_alloc and
    aio_setup_ring compute them."""
    nr = max(nr_events, NCPUS * 4) * 2
    size = RING_HEADER.size + IO_EVENT.size * nr
    pages = (size + PAGE - 1) // PAGE
    ring_nr = (PAGE * pages - RING_HEADER.size) // IO_EVENT.size
    return PAGE * pages, ring_nr, nr


def contexts(mm) -> dict:
    table = getattr(mm, "aio_contexts", None)
    if table is None:
        table = mm.aio_contexts = {}
    return table


def count(kernel) -> int:
    """aio-nr: the requests every live context may have in flight."""
    return getattr(kernel, "aio_nr", 0)
