"""What browsers and HTTP caches need of the API: CORS for dashboards on other origins, a
Cache-Control on every answer, and gzip for the clients that ask for it.

why CORS: a dashboard served from another origin (https://dash.example) calls the API with an
Authorization header, so its browser first sends a preflight OPTIONS; the API answered it 405 and
sent no Access-Control-Allow-Origin on anything, so no browser dashboard on another origin could
read a single answer. Origins are an explicit allowlist (spreadedge serve --cors-origin), off by
default; an Origin not in it is never reflected, and never ``*``.

why Cache-Control: nothing said how long an answer may be kept, so a shared proxy or the
browser's disk cache could keep a trader's orders and positions, or a login's token, and hand
them out again (a 404 is even cacheable by default, RFC 9111 section 4.2.2).

why gzip: a page of 1,000 orders is hundreds of KB of JSON, which a dashboard over a slow link
waited for uncompressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spreadedge.api.problems import Problem
from spreadedge.cli_serve import cors_origin_error

__all__ = ["CachePolicy", "Cors", "Gzip", "accepts_gzip", "cors_origin_error", "outermost"]

# The API's methods (HEAD is answered wherever GET is) and the request headers a dashboard sends
# beyond the CORS-safelisted ones (the bearer token, a login's JSON body).
CORS_METHODS = ("GET", "HEAD", "POST")
CORS_HEADERS = ("Authorization", "Content-Type")
# Response headers a dashboard's script may read beyond the safelisted ones: a 503's Retry-After.
# (Pages carry their cursor in the body: there is no pagination header.)
CORS_EXPOSED = ("Retry-After",)
# Seconds a browser may reuse a preflight's answer (Chromium takes at most 7200).
CORS_MAX_AGE = 600

# Cache-Control of every answer under /api/: no-store, as each may hold a trader's data or a
# token; health holds no one's, and may be kept if revalidated on each use.
PRIVATE = "no-store"
HEALTH = "no-cache"
HEALTH_PATH = "/api/v1/historical/health"

# Bytes below which an answer is sent as it is: one TCP segment's worth (an MTU of 1500 less the
# headers), which compression could not make cheaper to send.
GZIP_MINIMUM_SIZE = 1400
# zlib's default level: about the size of level 9 at a fraction of its CPU.
GZIP_LEVEL = 6


class Cors(CORSMiddleware):
    """Starlette's CORS with an allowlist of origins, its refused preflights problem details."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=tuple(origins),
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            # why no credentials: the token is a header the script sets, not a cookie
            allow_credentials=False,
            expose_headers=CORS_EXPOSED,
            max_age=CORS_MAX_AGE,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != HTTPStatus.BAD_REQUEST:
            return response
        # why: Starlette says "Disallowed CORS origin" in plain text, where every other refusal of
        # this API is a problem
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        problem = Problem(
            HTTPStatus.BAD_REQUEST,
            f"CORS preflight refused: its {refused} not allowed (see spreadedge serve --cors-origin)",
        ).response()
        for name, value in response.headers.items():
            if name.startswith("access-control-") or name == "vary":
                problem.headers[name] = value
        return problem


class CachePolicy:
    """Cache-Control on every answer under /api/ that does not set one: no-store, health no-cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        policy = HEALTH if path == HEALTH_PATH else PRIVATE

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Cache-Control", policy)
            await send(message)

        await self.app(scope, receive, with_policy)


class Gzip(GZipMiddleware):
    """Starlette's gzip, for a client whose Accept-Encoding takes gzip; others' answers untouched.

    why not GZipMiddleware alone: it compressed for ``Accept-Encoding: gzip;q=0`` (gzip refused,
    RFC 9110 section 12.5.3), and held every answer of a client that never asked for gzip (as wrk
    and most API clients do) while it decided not to compress it.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=GZIP_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and accepts_gzip(Headers(scope=scope).get("accept-encoding", "")):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding takes gzip: named (or x-gzip, or ``*``) with a weight above 0."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip().lower()] = weight
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


def outermost(app: ASGIApp, cors_origins: Sequence[str]) -> ASGIApp:
    """``app`` (the whole middleware stack, the 500 answer of its ServerErrorMiddleware included)
    under the cache policy, and under CORS when origins are allowed: a browser hides an error's
    status and body from a script unless the error too allows its origin."""
    app = CachePolicy(app)
    return Cors(app, cors_origins) if cors_origins else app
