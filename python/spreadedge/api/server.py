"""How ``spreadedge serve`` runs uvicorn: the HTTP protocol, bounded for clients that send a request
head slowly or without end, and the limits a network-facing server needs.

uvicorn bounds neither the time nor the size of a request head: a connection that sent part of a
head and then a byte now and then (slowloris) was kept for ever, and a header line that never ended
was buffered whole by the parser, so a few clients could hold every file descriptor of the server
or all of its memory. :class:`HttpProtocol` closes a connection whose head did not arrive within
``--head-timeout`` seconds (408 when part of it came) and answers 431 to a head of more than
:data:`MAX_HEAD_BYTES`, both as problem details, and closes the connection.
"""

from __future__ import annotations

import asyncio
import os
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from spreadedge.api.problems import Problem
from spreadedge.cli_serve import HEAD_TIMEOUT_VARIABLE

# Seconds a client has to send a request head (request line and headers), from its connection or
# the end of its previous answer, unless spreadedge serve --head-timeout says otherwise.
HEAD_TIMEOUT = 10.0
# Bytes a request head may take: a bearer token and a browser's headers need a few KiB.
MAX_HEAD_BYTES = 64 * 1024
# Seconds an idle keep-alive connection is kept (uvicorn's default).
KEEP_ALIVE = 5
# Connections and requests in flight a server process takes at once; more are answered 503.
LIMIT_CONCURRENCY = 1000


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request head bounded in time and in size."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = float(os.environ.get(HEAD_TIMEOUT_VARIABLE, HEAD_TIMEOUT))
        # bytes received since the current request head began, while it is not complete
        self._head_bytes = 0
        self._awaiting_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # why after parsing: a chunk may hold the end of the head and a body, which is not head
        if self._awaiting_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"the request line and headers take more than {MAX_HEAD_BYTES} bytes",
            )

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # what follows on the connection is the next request's head
        self._awaiting_head = True

    def on_response_complete(self) -> None:
        # a pipelined request whose head has come is started now: its head is no longer awaited
        waiting = not self.pipeline
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._head_bytes == 0:
            # an idle connection: nothing was asked, so nothing is answered
            self.transport.close()
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT, f"the request head did not arrive within {self.head_timeout:g} s"
        )

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer ``status`` as problem details and close the connection, the request unread."""
        response = Problem(status, detail).response()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, status.phrase.encode("ascii"))]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + response.body)
        self.transport.close()


def uvicorn_options(*, timeout_keep_alive: int, limit_concurrency: int) -> dict[str, Any]:
    """The options ``spreadedge serve`` runs uvicorn with (its event loop, protocol and limits)."""
    return {
        "loop": "uvloop",
        "http": HttpProtocol,
        "timeout_keep_alive": timeout_keep_alive,
        "limit_concurrency": limit_concurrency,
    }
