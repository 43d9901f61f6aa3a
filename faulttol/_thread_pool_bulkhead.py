"""The thread-pool bulkhead: calls run on a bounded pool of threads with a bounded queue
(resilience4j's ``FixedThreadPoolBulkhead``); re-exported by :mod:`faulttol.bulkhead`.

A :class:`ThreadPoolBulkhead` is a :class:`concurrent.futures.Executor`. Where a submitted
call goes follows ``java.util.concurrent.ThreadPoolExecutor``, as resilience4j's does, except
that an idle thread is always reused first:

1. an idle thread takes it at once;
2. else, with fewer than ``core_thread_pool_size`` threads, a new thread starts with it;
3. else it waits in the queue, if the queue holds fewer than ``queue_capacity`` calls;
4. else, with fewer than ``max_thread_pool_size`` threads, a new thread starts with it;
5. else it is refused: :class:`~faulttol.BulkheadFullError`, at once.

Threads beyond ``core_thread_pool_size`` end after ``keep_alive_duration`` idle seconds
(measured on the bulkhead's clock; with a ``FakeClock`` they end once the fake time has
passed, noticed within ``keep_alive_duration`` real seconds). Core threads stay until
:meth:`~ThreadPoolBulkhead.close`. The threads are daemon threads, so a pool that is never
closed does not keep the interpreter alive; close it to let queued work finish.

Each call runs in a copy of the submitter's :mod:`contextvars` context (as
``asyncio.to_thread`` does), so context-scoped settings such as
:func:`faulttol.testing.use_clock` reach it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast

from ._bulkhead_events import BulkheadEvents, BulkheadFullError, EmitsBulkheadEvents
from ._clock import Clock
from ._component import Component, LiveView, checked_setup
from ._decorating import wrap_calls
from .validation import check_int, check_non_negative

__all__ = [
    "DEFAULT_CORE_THREAD_POOL_SIZE",
    "DEFAULT_KEEP_ALIVE_DURATION",
    "DEFAULT_MAX_THREAD_POOL_SIZE",
    "DEFAULT_QUEUE_CAPACITY",
    "ThreadPoolBulkhead",
    "ThreadPoolBulkheadConfig",
    "ThreadPoolBulkheadMetrics",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_CPUS: Final = os.cpu_count() or 1

DEFAULT_MAX_THREAD_POOL_SIZE: Final = _CPUS
"""Threads at most: the number of CPUs (resilience4j's default)."""
DEFAULT_CORE_THREAD_POOL_SIZE: Final = max(1, _CPUS - 1)
"""Threads kept while idle: one less than the CPUs, at least 1 (resilience4j's default)."""
DEFAULT_QUEUE_CAPACITY: Final = 100
"""Calls that may wait for a thread."""
DEFAULT_KEEP_ALIVE_DURATION: Final = 0.02
"""Idle seconds after which a thread beyond the core ones ends (resilience4j's 20 ms)."""


@dataclass(frozen=True, slots=True)
class ThreadPoolBulkheadConfig:
    """The threads and the queue of a :class:`ThreadPoolBulkhead`; immutable.

    A value of the wrong kind raises ``ConfigTypeError`` (a ``TypeError`` and a
    ``ValueError``), a value out of range ``ValueError``; both name the field and what it
    allows. ``core_thread_pool_size`` must not exceed ``max_thread_pool_size``: when you lower
    the maximum below the default core size, lower the core size too.
    """

    max_thread_pool_size: int = DEFAULT_MAX_THREAD_POOL_SIZE
    """Threads at most (>= 1)."""
    core_thread_pool_size: int = DEFAULT_CORE_THREAD_POOL_SIZE
    """Threads kept while idle (1..max_thread_pool_size)."""
    queue_capacity: int = DEFAULT_QUEUE_CAPACITY
    """Calls that may wait for a thread (>= 0; 0: a call needs a free thread)."""
    keep_alive_duration: float = DEFAULT_KEEP_ALIVE_DURATION
    """Idle seconds before a thread beyond the core ones ends (>= 0 and finite)."""

    def __post_init__(self) -> None:
        check_int("max_thread_pool_size", self.max_thread_pool_size, minimum=1)
        check_int("core_thread_pool_size", self.core_thread_pool_size, minimum=1)
        if self.core_thread_pool_size > self.max_thread_pool_size:
            raise ValueError(
                "core_thread_pool_size must be in 1..max_thread_pool_size "
                f"({self.max_thread_pool_size}), got {self.core_thread_pool_size}"
            )
        check_int("queue_capacity", self.queue_capacity, minimum=0)
        check_non_negative(
            "keep_alive_duration", self.keep_alive_duration, allowed="finite seconds >= 0"
        )


class ThreadPoolBulkheadMetrics(LiveView["ThreadPoolBulkhead"]):
    """A live view of a :class:`ThreadPoolBulkhead`'s threads and queue."""

    _shown = ("queue_depth", "queue_capacity", "thread_pool_size", "max_thread_pool_size")

    @property
    def queue_capacity(self) -> int:
        """The configured ``queue_capacity``."""
        return self._owner._config.queue_capacity

    @property
    def core_thread_pool_size(self) -> int:
        """The configured ``core_thread_pool_size``."""
        return self._owner._config.core_thread_pool_size

    @property
    def max_thread_pool_size(self) -> int:
        """The configured ``max_thread_pool_size``."""
        return self._owner._config.max_thread_pool_size

    @property
    def queue_depth(self) -> int:
        """Calls waiting in the queue for a thread."""
        return len(self._owner._queue)

    @property
    def remaining_queue_capacity(self) -> int:
        """Free places in the queue."""
        return max(0, self.queue_capacity - self.queue_depth)

    @property
    def thread_pool_size(self) -> int:
        """Threads alive now (busy or idle)."""
        return len(self._owner._workers)

    @property
    def active_thread_count(self) -> int:
        """Threads running a call now."""
        bulkhead = self._owner
        with bulkhead._lock:
            return len(bulkhead._workers) - len(bulkhead._idle)


class _WorkItem:
    """One submitted call: its future, and the context it runs in."""

    __slots__ = ("args", "context", "fn", "future", "kwargs")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()

    def execute(self) -> tuple[bool, Any] | None:
        """Run the call: ``(True, result)``, ``(False, exception)``, or ``None`` when it was
        cancelled while queued. The future is settled later, by :meth:`settle`."""
        if not self.future.set_running_or_notify_cancel():
            return None
        try:
            return True, self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:
            return False, exc

    def settle(self, outcome: tuple[bool, Any] | None) -> None:
        """Hand the outcome of :meth:`execute` to the future (wakes whoever waits on it)."""
        if outcome is None:
            return
        ok, value = outcome
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)


class _Worker:
    """One pool thread. ``task`` is handed over (under the pool's lock) when it is idle."""

    __slots__ = ("idle_since", "task", "thread", "wakeup")

    def __init__(self) -> None:
        self.task: _WorkItem | None = None
        self.wakeup = threading.Event()
        self.idle_since = 0.0
        self.thread: threading.Thread | None = None


def _run_coroutine(fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
    """Run an ``async def`` function to completion in a fresh event loop (on a pool thread)."""

    async def main() -> T:
        return await fn(*args, **kwargs)

    return asyncio.run(main())


class ThreadPoolBulkhead(
    Component[ThreadPoolBulkheadConfig, BulkheadEvents], EmitsBulkheadEvents, Executor
):
    """Runs calls on a bounded pool of threads with a bounded queue; a full pool refuses calls
    with :class:`~faulttol.BulkheadFullError` at once instead of queueing without bound.

    ``submit(fn, *args, **kwargs)`` returns a :class:`concurrent.futures.Future` (it is a
    :class:`concurrent.futures.Executor`: ``map``, ``shutdown`` and ``with`` work too);
    ``call(fn, ...)`` runs ``fn`` on the pool and waits for its result; ``await
    call_async(fn, ...)`` awaits it without blocking the event loop. As a decorator, a plain
    function runs on the pool and its caller waits for the result; an ``async def`` function
    runs on a pool thread in an event loop of its own (so it must not use objects bound to
    the caller's loop) and its caller awaits the result.

    ``.events`` publishes ``on_call_permitted`` (a thread or a queue place was found),
    ``on_call_rejected`` and ``on_call_finished`` (the call returned, raised, or was
    cancelled before it ran). ``.close()`` refuses new calls (``RuntimeError``), lets the
    queued ones finish and joins the threads.
    """

    def __init__(
        self,
        name: str,
        config: ThreadPoolBulkheadConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._name, self._config, self._clock = checked_setup(
            name, config, ThreadPoolBulkheadConfig, clock
        )
        config = self._config
        self._lock = threading.Lock()
        # Guarded by _lock.
        self._queue: deque[_WorkItem] = deque()
        self._idle: list[_Worker] = []  # a stack: the most recently idle thread is reused
        self._workers: set[_Worker] = set()
        self._closed = False
        self._thread_numbers = itertools.count(1)
        self._observed = False
        self._events = BulkheadEvents(self._listeners_changed)
        self._metrics = ThreadPoolBulkheadMetrics(self)

    # -- properties ------------------------------------------------------------------------

    @property
    def metrics(self) -> ThreadPoolBulkheadMetrics:
        """``queue_depth``, ``queue_capacity``, ``thread_pool_size``... read live."""
        return self._metrics

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` (or ``shutdown``) was called."""
        return self._closed

    # -- submitting ------------------------------------------------------------------------

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` on the pool and return its future.

        Raises :class:`~faulttol.BulkheadFullError` when every thread is busy and the queue is
        full, and ``RuntimeError`` after :meth:`close`.
        """
        future: Future[R] = Future()
        item = _WorkItem(future, fn, args, kwargs)
        config = self._config
        rejected = False
        with self._lock:
            if self._closed:
                raise RuntimeError(f"ThreadPoolBulkhead {self._name!r} is closed")
            if self._idle:
                worker = self._idle.pop()
                worker.task = item
                worker.wakeup.set()
            elif len(self._workers) < config.core_thread_pool_size:
                self._start_worker(item)
            elif len(self._queue) < config.queue_capacity:
                self._queue.append(item)
            elif len(self._workers) < config.max_thread_pool_size:
                self._start_worker(item)
            else:
                rejected = True
        if not self._admitted(not rejected):
            raise BulkheadFullError(self._name)
        return future

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` on the pool and return its result (this thread waits)."""
        if inspect.iscoroutinefunction(fn):
            return cast(R, self.submit(_run_coroutine, fn, args, kwargs).result())
        return self.submit(fn, *args, **kwargs).result()

    async def call_async(
        self, fn: Callable[P, R] | Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result (the loop runs on).

        Cancelling the awaiting task cancels the call if it is still queued; a call already
        running on a thread runs to its end (a thread cannot be stopped).
        """
        if inspect.iscoroutinefunction(fn):
            future: Future[Any] = self.submit(_run_coroutine, fn, args, kwargs)
        else:
            future = self.submit(fn, *args, **kwargs)
        return cast(R, await asyncio.wrap_future(future))

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap ``fn`` so that every call runs on the pool (see the class docstring)."""
        if not callable(fn):
            raise TypeError(f"ThreadPoolBulkhead can only decorate a callable, got {fn!r}")
        submit = self.submit

        def run(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
            return submit(fn, *args, **kwargs).result()

        async def run_async(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.wrap_future(submit(_run_coroutine, fn, args, kwargs))

        return wrap_calls(fn, run, run_async)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`decorate`."""
        return self.decorate(fn)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new calls, let the queued ones finish, and join the threads.

        Idempotent. Called from one of the pool's own threads, it does not wait for that
        thread.
        """
        self.shutdown(wait=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """:class:`concurrent.futures.Executor`'s shutdown: refuse new calls; with
        ``cancel_futures`` cancel the queued ones; with ``wait`` join the threads once they
        have run what is left."""
        with self._lock:
            self._closed = True
            cancelled: list[_WorkItem] = []
            if cancel_futures:
                cancelled = list(self._queue)
                self._queue.clear()
            for worker in self._idle:
                worker.wakeup.set()
            threads = [w.thread for w in self._workers if w.thread is not None]
        for item in cancelled:
            item.future.cancel()
            self._finished()
        if wait:
            current = threading.current_thread()
            for thread in threads:
                if thread is not current:
                    thread.join()

    # -- threads ---------------------------------------------------------------------------

    def _start_worker(self, first: _WorkItem) -> None:
        """Start a thread that runs ``first`` (the lock is held)."""
        worker = _Worker()
        thread = threading.Thread(
            target=self._work,
            args=(worker, first),
            name=f"faulttol-bulkhead-{self._name}-{next(self._thread_numbers)}",
            daemon=True,
        )
        worker.thread = thread
        self._workers.add(worker)
        try:
            thread.start()
        except BaseException:  # e.g. "can't start new thread": the call is not taken
            self._workers.discard(worker)
            raise

    def _work(self, worker: _Worker, item: _WorkItem | None) -> None:
        while item is not None:
            outcome = item.execute()
            # Take the next queued call, or become idle, *before* settling the future: whoever
            # waits on it and submits again then finds this thread idle (and reuses it).
            queued, idle = self._after_call(worker)
            item.settle(outcome)
            del outcome
            self._finished()
            if queued is not None:
                item = queued
            elif idle:
                item = self._wait_idle(worker)
            else:
                item = None

    def _after_call(self, worker: _Worker) -> tuple[_WorkItem | None, bool]:
        """``(next queued call, False)``; else ``(None, True)`` with the worker registered
        idle; else ``(None, False)``: the pool is closed and the worker has left it."""
        with self._lock:
            if self._queue:
                return self._queue.popleft(), False
            if self._closed:
                self._workers.discard(worker)
                return None, False
            worker.wakeup.clear()  # (worker.task is None: a handed-over task is always taken)
            worker.idle_since = self._clock.monotonic()
            self._idle.append(worker)
            return None, True

    def _wait_idle(self, worker: _Worker) -> _WorkItem | None:
        """Wait (registered idle) for a call handed over by ``submit``; ``None`` when the
        thread must end (the pool closed, or an extra thread's keep-alive passed)."""
        config = self._config
        keep_alive = config.keep_alive_duration
        while True:
            # Only threads beyond the core ones time out (a count, not particular threads).
            timed = len(self._workers) > config.core_thread_pool_size
            worker.wakeup.wait(keep_alive if timed else None)
            with self._lock:
                task = worker.task
                if task is not None:  # handed over (and taken off the idle stack) by submit
                    worker.task = None
                    return task
                if self._closed or (
                    len(self._workers) > config.core_thread_pool_size
                    and self._clock.monotonic() - worker.idle_since >= keep_alive
                ):
                    self._retire(worker)
                    return None
                worker.wakeup.clear()

    def _retire(self, worker: _Worker) -> None:
        """Take an idle worker out of the pool (the lock is held)."""
        if worker in self._idle:
            self._idle.remove(worker)
        self._workers.discard(worker)
