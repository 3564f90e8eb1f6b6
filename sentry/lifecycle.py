"""A run's life as the embedding process sees it: ending it from outside (a Cancel
any thread may fire), awaiting it from asyncio (Sandbox.run_async), and giving its
memory back to the host at its end (collect_after).

A sandbox's kernel runs in a thread of its own (api._in_own_thread); cancelling
posts an end to that kernel's loop, which kills every task as SIGKILL would,
releases their memory and closes the run's host sockets (Kernel.run's finally),
then returns. Nothing of the sandbox outlives the thread."""
import gc
import threading

# How long a cancelled await waits for the sandbox's end before raising anyway
# (ending takes milliseconds; this only bounds a kernel that is stuck).
END_GRACE = 5.0
# A run whose peak (address space plus memory files) passed this has its objects
# collected at once (collect_after); smaller ones wait for Python's own collection.
COLLECT_ABOVE = 64 << 20


class Cancel:
    """A handle that ends a run from any thread: pass it as Sandbox.run(..., cancel=c),
    then c.cancel() kills everything in that sandbox; run() returns its Result (ended
    by SIGKILL). Cancelling before the run starts ends it as soon as it does; after
    it ended, nothing happens."""

    def __init__(self):
        self._lock = threading.Lock()
        self._kernel = None
        self.reason = None  # why, once cancelled

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            kernel = self._kernel
            if kernel is not None:
                kernel.post(lambda: kernel.end_everything(reason))

    def attach(self, kernel) -> None:
        """The run's kernel exists (runner.execute): a cancel from now on reaches it."""
        with self._lock:
            self._kernel = kernel
            if self.reason is not None:
                kernel.end_everything(self.reason)  # its loop ends at once

    def detach(self) -> None:
        """The run is over: later cancels do nothing."""
        with self._lock:
            self._kernel = None


async def run_in_thread(call):
    """await call(cancel) run in a thread of its own, never blocking the event loop.
    If the awaiting task is cancelled, the run is cancelled too and its end awaited
    (at most END_GRACE seconds), so that when CancelledError reaches the caller no
    process, memory file or host socket of the sandbox is left."""
    import asyncio  # (here: its import costs every embedding program ~15 ms, most never await)
    loop = asyncio.get_running_loop()
    cancel = Cancel()
    done = loop.create_future()

    def settle(value, error):
        if not done.done():
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)

    def body():
        value = error = None
        try:
            value = call(cancel)
        except BaseException as e:  # handed to the awaiting task
            error = e
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits this any more

    threading.Thread(target=body, name="sentry-run").start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.cancel()
        await asyncio.wait([done], timeout=END_GRACE)
        if done.done() and not done.cancelled():
            done.exception()  # seen: the run's own end is not an error here
        raise


def collect_after(outcome) -> None:
    """A run is over and its kernel's frame gone: what it held is garbage, in cycles
    (kernel, tasks, files). Its memory files (/tmp, /dev/shm, memfds) are freed only
    when those are collected; a run that held much has them collected now (a full
    collection costs ~3 ms), so that a host running call after call gets the memory
    back at once instead of at Python's next full collection; so has a run ended from
    outside (a Cancel: whoever cancels wants what it held back now) or killed by its time
    limit (it ran for long: the collection is a small part of it)."""
    if (getattr(outcome, "peak_memory", 0) > COLLECT_ABOVE or getattr(outcome, "ended_by", None)
            or getattr(outcome, "limit_hit", None) in ("timeout", "cpu_time")):
        gc.collect()
