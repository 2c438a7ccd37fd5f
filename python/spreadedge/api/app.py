"""The FastAPI application: routes, the pool's life, and every error as problem details."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spreadedge.api import browser, database, routes, service_routes
from spreadedge.api.problems import Problem, from_database_error

log = logging.getLogger("spreadedge.api")


class HeadAsGet:
    """HEAD answered as the GET of the same URL without its body (RFC 9110 section 9.3.2).

    why: FastAPI routes a GET endpoint for GET only, so HEAD got a 405, and an uptime checker that
    sends HEAD to /api/v1/historical/health saw a healthy server as down. Not a route method, so the
    OpenAPI document lists the GET operations alone, as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


# Bytes a request body may take: the only one is a login's (a username, a password, a TOTP code).
MAX_BODY_BYTES = 64 * 1024


class BoundedRequest:
    """A request body of at most MAX_BODY_BYTES (else 413), and a request given up, its database
    statement cancelled, when its client disconnects before the answer.

    why the body: FastAPI read a login's body whole into memory, whatever its size, and uvicorn
    bounds none, so one client sending hundreds of MB (or a chunked body that never ends) took the
    server's memory; a Content-Length above the bound is answered before a byte of the body is
    read (and with no "100 Continue" that would invite it), a longer chunked body when it passes
    the bound. The connection is closed after a 413: the rest of the body is never read.

    why the disconnect: uvicorn lets a request whose client has gone run on, so its statement kept
    its pooled connection for as long as it ran (up to the statement_timeout, waiting on a lock say),
    and clients that sent requests and hung up took the pool from everyone else. psycopg cancels the
    statement of a cancelled request in the server, and the connection goes back to the pool idle:
    the request's statement was its transaction, and the user it was scoped to ended with it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _bounded_body(scope, receive)
        if body is None:
            return  # the client went away
        if isinstance(body, Problem):
            response = body.response()
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await _until_disconnect(self.app, scope, body, receive, send)


async def _bounded_body(scope: Scope, receive: Receive) -> bytes | Problem | None:
    """The request's body, a 413 problem when it is longer than MAX_BODY_BYTES, None on disconnect."""
    too_large = Problem(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the request body takes more than {MAX_BODY_BYTES} bytes"
    )
    for name, value in scope["headers"]:
        # uvicorn refuses a Content-Length that is not a number (400)
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return too_large
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            return too_large
        if not message.get("more_body", False):
            return bytes(body)


async def _until_disconnect(app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Run ``app`` on the request with ``body``; cancel it if the client disconnects first."""
    # with the whole body read, the server's next message is http.disconnect: the client went
    # away, or the answer was sent
    disconnect = asyncio.ensure_future(receive())
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await asyncio.shield(disconnect)

    answered = False

    async def send_answer(message: Message) -> None:
        nonlocal answered
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered = True

    request = asyncio.ensure_future(app(scope, replay, send_answer))
    try:
        await asyncio.wait({request, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        if not request.done() and not answered:
            request.cancel()
        # why wait and not await: a request cancelled here is no error, and a cancellation of this
        # task itself must not be taken for the request's
        await asyncio.wait({request})
        if not request.cancelled():
            request.result()
    finally:
        request.cancel()
        disconnect.cancel()


class HistoryApi(FastAPI):
    """FastAPI with the cache policy and CORS outside its whole middleware stack.

    why outside: FastAPI puts its ServerErrorMiddleware (the 500 answer) outside every middleware
    added with add_middleware, so a 500 would carry neither a Cache-Control nor the CORS headers
    that let a dashboard's script read it.
    """

    cors_origins: Sequence[str] = ()

    def build_middleware_stack(self) -> ASGIApp:
        return browser.outermost(super().build_middleware_stack(), self.cors_origins)


def create_app(
    conninfo: str,
    migration_ids: list[str],
    *,
    pool_size: int = 10,
    statement_timeout: float = database.STATEMENT_TIMEOUT,
    health_timeout: float = database.HEALTH_TIMEOUT,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The history API over the database at ``conninfo``, built with these migrations; the
    database cancels a request's statement after ``statement_timeout`` seconds (a 503), and
    health answers within ``health_timeout`` seconds (and a second for a server that does not answer).
    A browser script on one of ``cors_origins`` (``https://host[:port]``) may read its answers;
    a ValueError names an origin that is not one."""
    for origin in cors_origins:
        error = browser.cors_origin_error(origin)
        if error is not None:
            raise ValueError(error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # why not wait: the server must come up (and say 503 on health) while the database is down
        await app.state.pool.open(wait=False)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = HistoryApi(
        title="spreadedge history API",
        version="1",
        description="Orders, trades, positions and portfolio history of spreadedge, as row-level "
        "security lets the logged-in user see them. Decimals are strings, times ISO 8601 UTC.",
        lifespan=lifespan,
    )
    app.state.pool = database.make_pool(
        conninfo, max_size=pool_size, statement_timeout=statement_timeout, health_timeout=health_timeout
    )
    app.state.migration_ids = migration_ids
    app.cors_origins = tuple(cors_origins)
    # innermost: a HEAD gets the headers of its GET, compressed as that would be
    app.add_middleware(browser.Gzip)
    app.add_middleware(HeadAsGet)
    app.add_middleware(BoundedRequest)
    app.include_router(routes.router)
    app.include_router(service_routes.router)

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, exc: psycopg.Error) -> JSONResponse:
        return from_database_error(exc).response()

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        return from_database_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ())]
        parameter = location[-1] if len(location) > 1 else None
        # why: a body that is not JSON at all is located by its character offset, not by a field,
        # and a missing body or one that is not an object by ("body",) alone: both named nothing
        # ("Field required")
        if first.get("type") == "json_invalid" or location == ["body"]:
            parameter = "body"
        message = first.get("msg", "invalid request")
        detail = f"{parameter}: {message}" if parameter else message
        return Problem(HTTPStatus.UNPROCESSABLE_ENTITY, detail, parameter=parameter).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        status = HTTPStatus(exc.status_code)
        response = Problem(status, str(exc.detail) if exc.detail else status.phrase).response()
        # why: a 405 must say which methods the path allows (Allow), as Starlette's own answer does
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return Problem(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log").response()

    return app
