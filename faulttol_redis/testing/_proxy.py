"""A black-hole TCP proxy on loopback: the fault of a lost route or a partition.

Unlike a killed or paused server, a frozen :class:`BlackHoleProxy` keeps every connection
open and answers nothing in either direction, so a client only notices through its own
timeouts or hang detection.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

__all__ = ["BlackHoleProxy"]


class BlackHoleProxy:
    """A TCP proxy on loopback in front of a server; ``freeze()`` stops forwarding both
    ways without closing any connection (a lost route, a partition)."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = [self._listener]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        """Stop forwarding, both ways, from now on (connections stay open)."""
        self._frozen.set()

    def _run(self) -> None:
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(self._socks), [], [], 0.02)
            for sock in readable:
                if sock is self._listener:
                    client, _ = sock.accept()
                    upstream = socket.create_connection(("127.0.0.1", self._target))
                    peers[client], peers[upstream] = upstream, client
                    self._socks += [client, upstream]
                    continue
                if self._frozen.is_set():
                    continue  # read nothing, forward nothing, close nothing
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for s in (sock, peers[sock]):
                        with contextlib.suppress(ValueError):
                            self._socks.remove(s)
                        s.close()
                    continue
                with contextlib.suppress(OSError):
                    peers[sock].sendall(data)
            if self._frozen.is_set():
                time.sleep(0.02)

    def close(self) -> None:
        """Stop, closing every connection (which also ends reads stuck on them)."""
        self._stop.set()
        self._thread.join()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
