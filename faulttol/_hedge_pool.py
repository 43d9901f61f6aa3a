"""The threads that run the attempts of synchronous hedged calls (see :mod:`faulttol.hedge`).

A hedge must start *now*: an attempt queued behind busy threads would defeat hedging, and the
attempts it races against are by definition the slow ones, which keep their threads. So this
is a *cached* pool (Java's ``newCachedThreadPool``), not a bounded
``concurrent.futures.ThreadPoolExecutor``: a job goes to an idle thread if there is one, else
a new thread starts at once; a thread idle for ``keep_alive`` seconds exits. The number of
threads is therefore the number of attempts running at once (hung losers included: a thread
cannot be killed, see docs/hedge.md), and idle ones cost nothing for long.

Handing a job to an idle thread is one lock acquire and one lock release: no queue, no
future. The jobs never raise (the hedge's job catches everything and reports it as the
attempt's outcome).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_KEEP_ALIVE", "CachedThreadPool"]

DEFAULT_KEEP_ALIVE: Final = 60.0
"""Real seconds an idle thread waits for a job before it exits."""


class _Worker:
    """One thread's mailbox: the next job and the lock it sleeps on until there is one."""

    __slots__ = ("job", "wake")

    def __init__(self, job: Callable[[], None] | None) -> None:
        self.job = job
        self.wake = threading.Lock()
        self.wake.acquire()  # released by whoever hands this worker a job (or closes it)


class CachedThreadPool:
    """Runs each job on an idle thread, or on a new one at once; idle threads expire.

    ``submit`` never queues and never blocks on a busy thread. ``close`` lets running jobs
    finish, ends idle threads and refuses later jobs (``RuntimeError``).
    """

    __slots__ = ("_alive", "_closed", "_idle", "_keep_alive", "_lock", "_name", "_started")

    def __init__(self, name: str, *, keep_alive: float = DEFAULT_KEEP_ALIVE) -> None:
        self._name = name
        self._keep_alive = keep_alive
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False
        self._alive = 0
        self._started = 0

    @property
    def threads(self) -> int:
        """Threads alive now (running a job or idle)."""
        with self._lock:
            return self._alive

    @property
    def idle_threads(self) -> int:
        """Threads waiting for a job."""
        with self._lock:
            return len(self._idle)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on an idle thread, or start a thread for it (``RuntimeError`` once
        closed)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            worker = self._idle.pop() if self._idle else None  # LIFO: hot threads first
            if worker is None:
                self._alive += 1
                self._started += 1
                number = self._started
        if worker is not None:
            worker.job = job
            worker.wake.release()
            return
        worker = _Worker(job)
        thread = threading.Thread(
            target=self._work, args=(worker,), name=f"{self._name}-{number}", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._alive -= 1
            raise

    def close(self) -> None:
        """Refuse later jobs and end the idle threads; running jobs finish (not joined)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.job = None
            worker.wake.release()

    def _work(self, worker: _Worker) -> None:
        try:
            while True:
                job, worker.job = worker.job, None
                if job is None:  # closed while idle
                    return
                job()
                del job
                with self._lock:
                    if self._closed:
                        return
                    self._idle.append(worker)
                if not worker.wake.acquire(timeout=self._keep_alive):
                    with self._lock:
                        if worker in self._idle:  # nobody handed it a job: expire
                            self._idle.remove(worker)
                            return
                    worker.wake.acquire()  # popped by submit/close just now: released soon
        finally:
            with self._lock:
                self._alive -= 1

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"CachedThreadPool({self._name!r}, {state}, threads={self._alive})"
