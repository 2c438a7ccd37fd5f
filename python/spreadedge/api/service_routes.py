"""Login, logout and health: the endpoints that need no session (logout needs the token it ends)."""

from __future__ import annotations

from datetime import UTC
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from spreadedge.api import database, models
from spreadedge.api.problems import Problem, from_database_error
from spreadedge.api.routes import ERRORS, Token
from spreadedge.security import client_address

router = APIRouter(prefix="/api/v1")


@router.post(
    "/auth/login",
    response_model=models.LoginResponse,
    responses={status: ERRORS[status] for status in (400, 401, 422, 503)},
    tags=["auth"],
)
async def login(request: Request, credentials: models.LoginRequest) -> models.LoginResponse:
    """Log in (auth.login): a session token for the Authorization header; 401 when refused."""
    # why: psycopg refuses a NUL before sending, and its error named no field (a 400 "a parameter
    # holds a character PostgreSQL cannot store"), where a query parameter's 400 names it
    for name in ("username", "password", "totp_code"):
        if "\x00" in (getattr(credentials, name) or ""):
            raise Problem(
                HTTPStatus.BAD_REQUEST,
                f"{name}: holds a NUL character, which PostgreSQL text cannot store",
                parameter=name,
            )
    result = await database.rows(
        request.app.state.pool,
        "auth.login",
        {
            "username": credentials.username,
            "password": credentials.password,
            "totp_code": credentials.totp_code,
            # behind a reverse proxy uvicorn takes the client from X-Forwarded-For (see client_address)
            "ip_address": client_address(request.client.host if request.client else None),
            "user_agent": request.headers.get("user-agent"),
        },
    )
    success, token, user_id, expires_at, message = result[0]
    if not success:
        raise Problem(HTTPStatus.UNAUTHORIZED, message)
    return models.LoginResponse(
        token=token,
        user_id=user_id,
        expires_at=expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


@router.post(
    "/auth/logout",
    status_code=HTTPStatus.NO_CONTENT,
    response_class=Response,
    responses={status: ERRORS[status] for status in (401, 503)},
    tags=["auth"],
)
async def logout(request: Request, token: Token) -> Response:
    """End the session of the bearer token (auth.logout); 401 when it was not live."""
    ended = await database.call(request.app.state.pool, "auth.logout", {"token": token}, token=None)
    if not ended:
        # why 28S02: auth.logout answers false rather than raise, and a client that switches on
        # the problem's sqlstate (as it does for every other request's bad token) must see the
        # invalid_session a GET with the same token gets
        raise Problem(
            HTTPStatus.UNAUTHORIZED, "the session is unknown, expired or already ended", sqlstate="28S02"
        )
    return Response(status_code=HTTPStatus.NO_CONTENT)


def _pool_stats(pool: AsyncConnectionPool) -> models.PoolStats:
    stats = pool.get_stats()
    return models.PoolStats(
        size=stats.get("pool_size", 0),
        available=stats.get("pool_available", 0),
        waiting=stats.get("requests_waiting", 0),
        max_size=stats.get("pool_max", pool.max_size),
    )


# why: a database the server reaches but that was never migrated (or whose ops.health predates
# this code) has no ops schema or function; health said "database: internal error; see the server
# log" (and logged an error), where the database was fine and the migrations were what was missing
_NOT_MIGRATED = {"3F000", "42883"}  # invalid_schema_name, undefined_function


def _failed_checks(error: Exception) -> list[models.HealthCheck]:
    """The checks to report when ops.health could not be asked."""
    if isinstance(error, psycopg.Error) and error.sqlstate in _NOT_MIGRATED:
        return [
            models.HealthCheck(name="database", ok=True, detail="reachable"),
            models.HealthCheck(
                name="migrations",
                ok=False,
                detail="ops.health is missing: the database is not migrated (spreadedge migrate)",
            ),
        ]
    return [models.HealthCheck(name="database", ok=False, detail=from_database_error(error).detail)]


@router.get(
    "/historical/health",
    response_model=models.Health,
    responses={503: {"model": models.Health, "description": "Unhealthy: the failing checks"}},
    tags=["health"],
)
async def health(request: Request) -> JSONResponse:
    """Database reachable, migrations current, partitions ahead, default partitions empty (ops.health);
    503 naming the failing checks, within the health timeout (a second more for a database that
    does not answer)."""
    pool: database.ApiPool = request.app.state.pool
    checks: list[models.HealthCheck]
    try:
        # why health=True: within a few seconds of its own (--health-timeout), not a history
        # request's statement_timeout (30 s): a probe gave up first and saw no answer at all
        result: list[tuple[Any, ...]] = await database.rows(
            pool, "ops.health", {"expected_migrations": request.app.state.migration_ids}, health=True
        )
    except Exception as exc:  # no answer: the database is not usable, or not migrated
        checks = _failed_checks(exc)
    else:
        checks = [models.HealthCheck(name="database", ok=True, detail="reachable")]
        checks += [models.HealthCheck(name=name, ok=ok, detail=detail) for name, ok, detail in result]
    healthy = all(check.ok for check in checks)
    body = models.Health(status="healthy" if healthy else "unhealthy", checks=checks, pool=_pool_stats(pool))
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
