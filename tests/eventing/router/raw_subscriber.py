"""A subscriber at the byte level, for the router tests that look at the HTTP framing itself (what the router
writes, how it reads an answer), where `eventing.router.testing.RecordingSubscriber` (a real HTTP server) would
hide it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

# The head of a request -> (the raw response, close the connection after it), or None: hang up without an answer.
Answer = Callable[[bytes], tuple[bytes, bool] | None]


def header(head: bytes, name: bytes) -> bytes:
    """The value of header `name` (any case) in a request head; b"" when it has none."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return b""


class RawSubscriber:
    """A TCP server that reads each HTTP request (its head, then a Content-Length body) and sends what `answer`
    returns for it. Keeps the request heads, counts connections; `closed` is set each time it closed a connection
    after a response."""

    def __init__(self, answer: Answer, path: str = "/") -> None:
        self.answer = answer
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}{path}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(header(head, b"content-length") or 0)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                with self.lock:
                    self.requests.append(head)
                    answered = self.answer(head)
                if answered is None:
                    return
                response, close = answered
                conn.sendall(response)
                if close:
                    conn.shutdown(socket.SHUT_RDWR)
                    self.closed.set()
                    return

    def stop(self) -> None:
        self.server.close()


def scripted(script: list[tuple[bytes, bool]], path: str = "/sub?x=1") -> RawSubscriber:
    """Answers each request with the next (raw response, close) of `script`; hangs up once it is used up."""
    remaining = list(script)
    return RawSubscriber(lambda _head: remaining.pop(0) if remaining else None, path)


def by_event_id(responses: dict[str, bytes], default: bytes) -> RawSubscriber:
    """Answers a request with the response for its ce-id, else `default`; keeps the connection open."""
    return RawSubscriber(lambda head: (responses.get(header(head, b"ce-id").decode(), default), False))
