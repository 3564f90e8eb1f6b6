"""Resident-set high-water marks, for ru_maxrss (getrusage, wait4): a process's own peak and
the largest of the children it reaped (theirs included), as Linux keeps them in its signal
struct. On ptrace the host kernel counts a guest's pages (VmHWM of its host process); on
unicorn every accessible mapping counts as resident, as /proc/PID/status says there."""


def hiwater_kb(task) -> int:
    """The peak resident set of task's memory so far, in kB."""
    tid = getattr(task.cpu, "tid", None)
    if isinstance(tid, int):
        try:
            with open(f"/proc/{tid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    from sentry.vfs.procfs import MemFigures
    return MemFigures(task).rss >> 10


def note(task) -> None:
    """Fold the task's memory's peak into its process's (before the memory goes: exec, exit)."""
    proc = task.proc
    proc.maxrss_kb = max(proc.maxrss_kb, hiwater_kb(task))


def self_kb(proc) -> int:
    """RUSAGE_SELF's ru_maxrss: the process's peak, its live memory's included."""
    leader = next((t for t in proc.tasks if t.exit_status is None), None)
    return max(proc.maxrss_kb, hiwater_kb(leader) if leader is not None else 0)


def reaped(parent, child) -> None:
    """parent reaped child: its children's peak takes the child's and the child's children's."""
    parent.children_maxrss_kb = max(parent.children_maxrss_kb, child.maxrss_kb, child.children_maxrss_kb)
