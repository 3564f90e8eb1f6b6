"""What a fresh IPC namespace does, printed for tests/test_ipc_namespace.py: the ids
System V objects get (cyclic indexes, sequence numbers, *_next_id), the IPC sysctls
(read, written, refused, and binding the calls), shm_rmid_forced and orphans,
/proc/sysvipc, and the mqueue knobs binding an unprivileged process. Run natively
under `unshare --ipc` (a namespace of its own, gone with it) and in the sandbox (whose
namespace is its own), through ctypes: the same calls either way."""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
def err(r):
    return r if r >= 0 else "-1 " + __import__("errno").errorcode[ctypes.get_errno()]
def knob(name, value=None):
    path = "/proc/sys/" + name
    if value is not None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            return "write %r: %s" % (value, __import__("errno").errorcode[e.errno])
    with open(path) as f:
        return f.read().strip()
P, C, X, RMID, STAT = 0, 0o1000, 0o2000, 0, 2
shm = [libc.shmget(P, 4096, 0o600) for _ in range(3)]
print("first shm ids:", shm)
libc.shmctl(shm[1], RMID, None)
print("next after removing the second:", libc.shmget(P, 4096, 0o600))
ids = []
for i in range(70):
    q = libc.msgget(P, 0o600)
    ids.append(q)
    libc.msgctl(q, RMID, None)
print("msg ids created and removed one by one:", ids[:3], ids[62:67])
print("msg_next_id:", knob("kernel/msg_next_id"), knob("kernel/msg_next_id", "100"))
q = libc.msgget(P, 0o600)
print("msgget with it:", q, "then:", knob("kernel/msg_next_id"))
print("with a sequence:", knob("kernel/msg_next_id", str(2 * 32768 + 100)), libc.msgget(P, 0o600))
print("an index in use:", knob("kernel/msg_next_id", "100"), libc.msgget(P, 0o600))
print("negative:", knob("kernel/msg_next_id", "-5"), "junk:", knob("kernel/msg_next_id", "12x"))
print("keyed:", libc.msgget(0x1234, C | 0o644), libc.semget(0x1234, 2, C | 0o600), libc.shmget(0x1234, 100, C | 0o600))
print("sem:", knob("kernel/sem"), "|", knob("kernel/sem", "250 1000 32 3"))
print("semget x3:", [err(libc.semget(P, 1, 0o600)) for _ in range(3)])
print("semmni too big:", knob("kernel/sem", "250 1000 32 40000"))
print("semmns 1000, ask 1001:", knob("kernel/sem", "250 1000 32 32000"), err(libc.semget(P, 1000, 0o600)))
print("semmsl 250, ask 251:", err(libc.semget(P, 251, 0o600)))
print("msgmni:", knob("kernel/msgmni", "7"), [err(libc.msgget(P, 0o600)) for _ in range(3)])
print("msgmni range:", knob("kernel/msgmni", "40000"), knob("kernel/msgmni", "-1"))
print("msgmax:", knob("kernel/msgmax", "100"))
knob("kernel/msgmni", "32000")
q = libc.msgget(P, 0o600)
buf = ctypes.create_string_buffer(8 + 200)
buf[0] = 1  # mtype
print("msgsnd 101 bytes:", err(libc.msgsnd(q, buf, 101, 0)), "100:", err(libc.msgsnd(q, buf, 100, 0)))
print("msgmnb:", knob("kernel/msgmnb", "50"))
q2 = libc.msgget(P, 0o600)
print("a new queue's qbytes bound: 40", err(libc.msgsnd(q2, buf, 40, 0)), "20 more", err(libc.msgsnd(q2, buf, 20, 0o4000)))
print("shmmax:", knob("kernel/shmmax", "8192"), err(libc.shmget(P, 8193, 0o600)), err(libc.shmget(P, 8192, 0o600)) >= 0)
print("shmall:", knob("kernel/shmall", "10"), err(libc.shmget(P, 8192, 0o600)))
print("shmmni:", knob("kernel/shmmni", "8"), err(libc.shmget(P, 10, 0o600)), knob("kernel/shmmni", "4096"))
print("shmmax bad:", knob("kernel/shmmax", "-1"), knob("kernel/shmmax", "18446744073692774399"), knob("kernel/shmall", "18446744073692774399"))
sys.stdout.flush()
pid = os.fork()
if pid == 0:
    libc.shmget(0x777, 100, C | 0o600)
    os._exit(0)
os.waitpid(pid, 0)
print("an orphan stays:", libc.shmget(0x777, 0, 0) >= 0)
print("shm_rmid_forced:", knob("kernel/shm_rmid_forced", "2"), knob("kernel/shm_rmid_forced", "1"))
print("the orphan went:", err(libc.shmget(0x777, 0, 0)), "ours stay:", libc.shmget(0x1234, 0, 0) >= 0)
with open("/proc/sysvipc/shm") as f:
    lines = f.read().splitlines()
print("sysvipc shm:", len(lines) - 1, [l.split()[:4] for l in lines[1:]])
with open("/proc/sysvipc/msg") as f:
    print("sysvipc msg:", [l.split()[:5] for l in f.read().splitlines()[1:]])
with open("/proc/sysvipc/sem") as f:
    print("sysvipc sem:", [l.split()[:4] for l in f.read().splitlines()[1:]])
for k in ("msg_max", "msgsize_max", "msg_default", "msgsize_default", "queues_max"):
    print("mqueue", k, knob("fs/mqueue/" + k))
print("msg_max 0:", knob("fs/mqueue/msg_max", "0"), "5:", knob("fs/mqueue/msg_max", "5"))
print("msgsize_default 100:", knob("fs/mqueue/msgsize_default", "100"), "200:", knob("fs/mqueue/msgsize_default", "200"))
print("queues_max:", knob("fs/mqueue/queues_max", "1"))
sys.stdout.flush()
pid = os.fork()
if pid == 0:  # no privilege: the knobs bind
    os.setgid(65534); os.setuid(65534)
    class Attr(ctypes.Structure):
        _fields_ = [("f", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long), ("cur", ctypes.c_long), ("r", ctypes.c_long * 4)]
    a = Attr(0, 6, 64, 0)
    print("mq_open maxmsg 6:", err(libc.mq_open(b"/q1", 0o100 | 2, 0o600, ctypes.byref(a))))
    a = Attr(0, 5, 64, 0)
    q = libc.mq_open(b"/q1", 0o100 | 2, 0o600, ctypes.byref(a))
    print("mq_open maxmsg 5:", q >= 0)
    print("a second queue:", err(libc.mq_open(b"/q2", 0o100 | 2, 0o600, None)))
    b = Attr()
    libc.mq_getattr(q, ctypes.byref(b))
    libc.mq_unlink(b"/q1")
    print("a second after unlinking:", err(libc.mq_open(b"/q2", 0o100 | 2, 0o600, None)))
    libc.mq_unlink(b"/q2")
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
print("done")
