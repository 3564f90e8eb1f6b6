"""The only ways a handler hands control back to the kernel loop other than
returning or raising Errno: wait for something, or end the task."""


class Wait(Exception):
    """Park the task until `fd` (a host fd) is ready for `events` (selectors
    EVENT_READ/EVENT_WRITE) or until `deadline` (time.monotonic seconds).
    When the fd is ready the syscall runs again from the start; when the
    deadline passes the syscall returns `timeout_result` instead."""

    __slots__ = ("fd", "events", "deadline", "timeout_result")

    def __init__(self, fd=None, events=0, deadline=None, timeout_result=0):
        self.fd = fd
        self.events = events
        self.deadline = deadline
        self.timeout_result = timeout_result


class TaskExit(Exception):
    """The task has ended (exit/exit_group or a fatal signal already recorded)."""
