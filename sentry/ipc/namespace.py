"""IpcNamespace: all the IPC state of one IPC namespace, in one object.

`IpcNamespace()` takes no argument and starts empty, with Linux's default limits,
as a new namespace does (clone or unshare with CLONE_NEWIPC): the kernel makes the
sandbox's first one (`Kernel.ipc_ns`), every task refers to its own (`task.ipc_ns`,
the same object across fork and clone), and a new namespace is just a new
IpcNamespace() given to the task that asks for it. Everything the IPC calls,
/proc/sysvipc and the IPC sysctls read is here: the three System V tables with
their limits and counters, and the namespace's POSIX mqueue filesystem with its
limits (/proc/sys/fs/mqueue).
"""
from sentry.ipc.ids import IpcIds

# Linux's defaults (include/uapi/linux/{shm,msg,sem}.h, ipc/mqueue.c); the family
# modules take theirs from here (importing them at every start would cost)
SHMMAX = SHMALL = (1 << 64) - 1 - (1 << 24)  # ULONG_MAX - 2^24
SHMMNI = 4096
MSGMAX, MSGMNB, MSGMNI = 8192, 16384, 32000
SEMMSL, SEMMNS, SEMOPM, SEMMNI = 32000, 1024000000, 500, 32000
DFLT_QUEUESMAX, DFLT_MSG, DFLT_MSGMAX, DFLT_MSGSIZE, DFLT_MSGSIZEMAX = 256, 10, 10, 8192, 8192


class IpcNamespace:
    def __init__(self):
        # System V shared memory (ipc/shm.c)
        self.shm = IpcIds()
        self.shm_ctlmax = SHMMAX
        self.shm_ctlall = SHMALL
        self.shm_ctlmni = SHMMNI
        self.shm_rmid_forced = 0
        self.shm_tot = 0                # pages of all segments
        # message queues (ipc/msg.c)
        self.msg = IpcIds()
        self.msg_ctlmax = MSGMAX
        self.msg_ctlmnb = MSGMNB
        self.msg_ctlmni = MSGMNI
        self.msg_bytes = 0              # bytes and messages queued, for MSG_INFO
        self.msg_hdrs = 0
        # semaphores (ipc/sem.c): semmsl, semmns, semopm, semmni
        self.sem = IpcIds()
        self.sem_ctls = [SEMMSL, SEMMNS, SEMOPM, SEMMNI]
        self.used_sems = 0
        # POSIX message queues (ipc/mqueue.c)
        self.mq_queues_max = DFLT_QUEUESMAX
        self.mq_msg_max = DFLT_MSGMAX
        self.mq_msgsize_max = DFLT_MSGSIZEMAX
        self.mq_msg_default = DFLT_MSG
        self.mq_msgsize_default = DFLT_MSGSIZE
        self.mq_queues_count = 0
        self.mq_user_bytes: dict[int, int] = {}  # RLIMIT_MSGQUEUE's count, by uid
        self._mqueue = None

    @property
    def mqueue(self):
        """The namespace's mqueue filesystem (made when first used)."""
        if self._mqueue is None:
            from sentry.ipc.mqueue import MqueueFS
            self._mqueue = MqueueFS(self)
        return self._mqueue
