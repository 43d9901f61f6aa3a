"""Throwaway ``redis-server`` processes on loopback, for tests (yours and ours), benchmarks and
the demo. Public through :mod:`faulttol_redis.testing`.

:class:`RedisServer` starts a real server on 127.0.0.1 (or another loopback address) and a
free port, without persistence, in its own temporary directory, and lets the caller inject
real faults: :meth:`~RedisServer.kill` (SIGKILL: connections are refused),
:meth:`~RedisServer.pause` (SIGSTOP: connections hang until they time out),
:meth:`~RedisServer.resume` and :meth:`~RedisServer.restart` (same port, empty data set).
:func:`server_factory` starts any number of them and stops them all at the end.

It only ever binds loopback addresses. Nothing a :class:`RedisServer` starts outlives it:

* a server dropped without :meth:`~RedisServer.stop` (garbage collected) is killed and its
  temporary directory removed (a :func:`weakref.finalize`, which also runs at interpreter
  exit for the servers still alive then);
* on Linux, a server started from the main thread is also killed by the kernel when the
  interpreter dies without running any clean-up (SIGKILL, a crash): the process is started
  with ``PR_SET_PDEATHSIG`` = SIGKILL. Its temporary directory (a few bytes: the log) is left
  behind in that case, since nothing of ours runs any more. A server started from another
  thread does not get this (the kernel ties the signal to the thread that started the
  process, which may end long before the interpreter).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import redis

from ._binaries import find_redis_server, free_port, is_loopback, server_version

__all__ = [
    "RedisServer",
    "ServerFactory",
    "find_redis_server",
    "free_port",
    "server_factory",
    "server_version",
    "stop_all",
]

DEFAULT_STARTUP_TIMEOUT = 10.0
"""Seconds to wait for a fresh server to answer PING."""

DEFAULT_STOP_TIMEOUT = 5.0
"""Seconds a graceful stop may take before the process is killed."""

_START_ATTEMPTS = 3
"""Attempts with fresh ports when a chosen free port turned out to be taken."""

_PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal the kernel sends a process when its parent (thread) dies."""


class _Resources:
    """What a :class:`RedisServer` owns outside the interpreter: its process and its
    temporary directory. Shared with the server's finalizer, which must not refer to the
    server itself (it would keep it alive)."""

    __slots__ = ("directory", "process")

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: str | None = None


def _release(resources: _Resources) -> None:
    """Kill the process (SIGKILL, also when paused), reap it and remove the directory.

    Idempotent; runs when a server is garbage collected or at interpreter exit, and must not
    raise there.
    """
    process, resources.process = resources.process, None
    if process is not None:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()  # SIGKILL: also ends a stopped (paused) process
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(DEFAULT_STOP_TIMEOUT)
        if process.stderr is not None:
            with contextlib.suppress(OSError):
                process.stderr.close()
    directory, resources.directory = resources.directory, None
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _libc_prctl() -> Any:
    """libc's ``prctl`` (Linux only), or None when it cannot be found."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the new process get SIGKILL when this interpreter dies.

    Only on Linux and from the main thread: ``PR_SET_PDEATHSIG`` fires when the *thread*
    that started the process ends, and only the main thread lives as long as the
    interpreter. The function runs in the child between fork and exec; it only calls
    ``prctl`` (looked up beforehand) and ``getppid``.
    """
    prctl = _libc_prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class RedisServer:
    """A real ``redis-server`` process on loopback; a context manager that stops it.

    ``port=None`` picks a free port. The server keeps no data on disk (``--save ''``,
    ``--appendonly no``), works in its own temporary directory and allows ``DEBUG`` (so tests
    can ``DEBUG SLEEP``). ``extra_args`` are appended to the command line. The constructor
    starts the server and returns once it answers PING.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"host must be a loopback address, got {host!r}")
        if not startup_timeout > 0:
            raise ValueError(f"startup_timeout must be > 0, got {startup_timeout}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self.binary = binary or find_redis_server()
        self.version = server_version(self.binary)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self._extra_args = tuple(extra_args)
        self._startup_timeout = startup_timeout
        self._resources = _Resources()
        # Kills the process and removes the directory when this object is garbage collected
        # without stop(), or at interpreter exit (weakref.finalize registers with atexit).
        self._finalizer = weakref.finalize(self, _release, self._resources)
        self._paused = False
        self._clients: list[redis.Redis] = []
        self._lock = threading.RLock()
        self.start()

    # The process and the directory live in self._resources, shared with the finalizer.

    @property
    def _process(self) -> subprocess.Popen[bytes] | None:
        return self._resources.process

    @_process.setter
    def _process(self, process: subprocess.Popen[bytes] | None) -> None:
        self._resources.process = process

    @property
    def _dir(self) -> str | None:
        return self._resources.directory

    @_dir.setter
    def _dir(self, directory: str | None) -> None:
        self._resources.directory = directory

    # --- properties ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://host:port/0``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id while a process exists (also while paused), else ``None``."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Whether the process is alive (a paused process is alive)."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def is_paused(self) -> bool:
        """Whether the process is stopped by :meth:`pause`."""
        return self._paused and self.is_running

    @property
    def log_path(self) -> str | None:
        """The server's log file, while its temporary directory exists."""
        return None if self._dir is None else os.path.join(self._dir, "redis.log")

    # --- lifecycle -----------------------------------------------------------------------

    def _command(self) -> list[str]:
        assert self._dir is not None
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", os.path.join(self._dir, "redis.log"),
            "--daemonize", "no",
            "--protected-mode", "no",
        ]
        if self.version >= (7, 0, 0):
            args += ["--enable-debug-command", "yes"]
        return [*args, *self._extra_args]

    def start(self) -> None:
        """Start the process if it is not running and wait until it answers PING."""
        with self._lock:
            if self.is_running:
                return
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="faulttol-redis-")
            last_error: RuntimeError | None = None
            for _ in range(_START_ATTEMPTS):
                self._paused = False
                self._process = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # a ^C in the terminal does not reach it
                    preexec_fn=_die_with_parent(),
                )
                try:
                    self._wait_ready()
                    return
                except RuntimeError as exc:
                    last_error = exc
                    self._reap(kill=True)
                    if self._fixed_port:
                        break
                    self.port = free_port(self.host)  # probably lost a race for the port
            assert last_error is not None
            raise last_error

    def _wait_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"redis-server on {self.host}:{self.port} exited with {process.returncode}: "
                    f"{self._diagnostics()}"
                )
            if self._answers_ping():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on {self.host}:{self.port} did not answer PING within "
                    f"{self._startup_timeout}s: {self._diagnostics()}"
                )
            time.sleep(0.01)

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                # a server with requirepass answers NOAUTH: it is up all the same
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    def _diagnostics(self) -> str:
        parts: list[str] = []
        process = self._process
        if process is not None and process.stderr is not None and process.poll() is not None:
            with contextlib.suppress(OSError, ValueError):
                parts.append(process.stderr.read().decode(errors="replace").strip())
        log = self.log_path
        if log is not None and os.path.exists(log):
            with contextlib.suppress(OSError):
                parts.append(Path(log).read_text(errors="replace")[-2000:].strip())
        return " | ".join(part for part in parts if part) or "no output"

    def _reap(self, *, kill: bool) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._paused:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(DEFAULT_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        self._paused = False

    def kill(self) -> None:
        """SIGKILL the process and reap it: new connections are refused. Idempotent."""
        with self._lock:
            self._reap(kill=True)

    def pause(self) -> None:
        """SIGSTOP the process: it keeps its port but answers nothing (commands time out)."""
        with self._lock:
            process = self._require_running("pause")
            process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused process. A no-op when it is not paused."""
        with self._lock:
            process = self._require_running("resume")
            process.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self) -> None:
        """Stop the process (if running, even paused) and start a fresh one on the same port.

        The data set starts empty. Returns once the new process answers PING.
        """
        with self._lock:
            self._reap(kill=True)
            fixed, self._fixed_port = self._fixed_port, True
            try:
                self.start()
            finally:
                self._fixed_port = fixed

    def stop(self) -> None:
        """Stop gracefully (SIGTERM; resumes a paused process first), clean up. Idempotent.

        Also closes the clients made by :meth:`client`.
        """
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(Exception):
                    client.close()
            self._clients.clear()
            self._reap(kill=False)
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"cannot {action} redis-server on port {self.port}: not running")
        return process

    # --- clients -------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` connected to this server; closed by :meth:`stop`."""
        client = redis.Redis(host=self.host, port=self.port, **kwargs)
        self._clients.append(client)
        return client

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        if self.is_paused:
            state = "paused"
        elif self.is_running:
            state = "running"
        else:
            state = "stopped"
        version = ".".join(map(str, self.version))
        return f"RedisServer({self.host}:{self.port}, {state}, pid={self.pid}, v{version})"


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def stop_all(items: Iterable[_Stoppable]) -> None:
    """``stop()`` every one of ``items``, even after one failed; then raise the first
    error, if any (so that one bad stop leaves no process behind)."""
    errors: list[Exception] = []
    for item in items:
        try:
            item.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


ServerFactory: TypeAlias = Callable[[int], list[RedisServer]]
"""``start(n) -> list[RedisServer]``: what :func:`server_factory` yields and the
``redis_servers`` fixture is (for annotations: ``def test_x(redis_servers: ServerFactory)``)."""


@contextlib.contextmanager
def server_factory(**server_kwargs: Any) -> Iterator[ServerFactory]:
    """Yield ``start(n) -> list[RedisServer]``; on exit stop every server it started.

    ``server_kwargs`` go to every :class:`RedisServer` (``binary``, ``extra_args``...).
    Servers are stopped even when the body raised, paused (SIGSTOPped) and killed ones too;
    if a stop fails, the others are still stopped and the first error is raised afterwards.
    ``start(n)`` raises :class:`ValueError` for ``n < 1``.
    """
    started: list[RedisServer] = []

    def start(n: int) -> list[RedisServer]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        servers: list[RedisServer] = []
        for _ in range(n):
            server = RedisServer(**server_kwargs)
            started.append(server)
            servers.append(server)
        return servers

    try:
        yield start
    finally:
        stop_all(started)
