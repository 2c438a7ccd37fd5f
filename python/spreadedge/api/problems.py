"""Errors as RFC 9457 problem details, with the HTTP status each kind of failure deserves.

The SQL functions decide what is wrong and say so with a project SQLSTATE (``ops.error_codes``);
this module only maps a SQLSTATE to a status. A client never sees a stack trace or SQL text: the
detail is the server's message for errors the caller caused, and a fixed sentence otherwise.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import psycopg
import psycopg.errors
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from spreadedge.api.database import DatabaseTimeout, PoolBusy, PoolRefused
from spreadedge.connection_limits import TOO_MANY_CONNECTIONS

log = logging.getLogger("spreadedge.api")

MEDIA_TYPE = "application/problem+json"
# The SQL functions' argument names where the HTTP parameter is named differently.
PARAMETER_NAMES = {"page_size": "limit"}

READ_ONLY = "the database is read-only (a standby, or writes are switched off): retry when it takes writes"
DISK_FULL = "the database server's disk is full: retry once space is freed"
BUSY = "every database connection of the server is serving another request: retry in a few seconds"
# Seconds a 503's client is asked to wait before it retries (Retry-After, RFC 9110 section 10.2.3).
RETRY_AFTER = 5

# SQLSTATE (or its two-character class) -> HTTP status
_STATUS_BY_SQLSTATE = {
    "28S01": HTTPStatus.UNAUTHORIZED,  # invalid_credentials
    "28S02": HTTPStatus.UNAUTHORIZED,  # invalid_session
    "42S01": HTTPStatus.FORBIDDEN,  # permission_denied
    "42501": HTTPStatus.FORBIDDEN,  # insufficient_privilege (a database role lacks a grant)
    "55S04": HTTPStatus.FORBIDDEN,  # user_disabled
    "23S03": HTTPStatus.NOT_FOUND,  # unknown_strategy (also another user's)
    "23S04": HTTPStatus.NOT_FOUND,  # unknown_order (also another user's)
    "22": HTTPStatus.BAD_REQUEST,  # data exceptions: every invalid argument
}


class Problem(Exception):
    """An HTTP error to answer with problem details."""

    def __init__(
        self,
        status: HTTPStatus,
        detail: str,
        *,
        parameter: str | None = None,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter
        self.sqlstate = sqlstate

    def response(self) -> JSONResponse:
        body = {
            "type": "about:blank",
            "title": self.status.phrase,
            "status": int(self.status),
            "detail": self.detail,
            "parameter": self.parameter,
            "sqlstate": self.sqlstate,
        }
        headers = None
        if self.status == HTTPStatus.UNAUTHORIZED:
            headers = {"WWW-Authenticate": "Bearer"}
        elif self.status == HTTPStatus.SERVICE_UNAVAILABLE:
            # why: the server is fine and the request may be retried as it is; say when
            headers = {"Retry-After": str(RETRY_AFTER)}
        return JSONResponse(body, status_code=int(self.status), media_type=MEDIA_TYPE, headers=headers)


def unavailable(reason: str = "the database is unavailable") -> Problem:
    return Problem(HTTPStatus.SERVICE_UNAVAILABLE, reason)


def from_database_error(error: Exception) -> Problem:
    """The problem for an error raised while talking to the database."""
    if isinstance(error, PoolBusy):
        # why: a pool whose connections all serve slow requests said "the database is unavailable",
        # sending an operator to a database that was answering everyone else
        log.warning("database connections all busy: %s", error)
        return unavailable(BUSY)
    if isinstance(error, PoolRefused):
        # why its own detail and SQLSTATE: the server answers everyone holding a connection and
        # refuses new ones (53300); "the database is unavailable" sent an operator to a database
        # that was up, not to what filled its connections
        log.warning("%s", error)
        return Problem(
            HTTPStatus.SERVICE_UNAVAILABLE, f"{error}; retry in a few seconds", sqlstate=TOO_MANY_CONNECTIONS
        )
    if isinstance(error, DatabaseTimeout):
        # why its own detail: the server did not cancel the statement, it did not answer at all
        log.warning("database gave no answer: %s", error)
        return unavailable(f"{error}; retry later")
    if isinstance(error, psycopg.errors.QueryCanceled):
        # why: the statement ran past the API's statement_timeout (waiting on a lock, say) or an
        # operator cancelled it; it was "the database is unavailable", which it was not
        log.warning("database statement cancelled: %s", error.diag.message_primary)
        return Problem(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the database cancelled the request ({error.diag.message_primary}): retry later",
            sqlstate=error.sqlstate,
        )
    # why the SQLSTATE first: psycopg raises class 28 (invalid_session) as an OperationalError too
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        # why: a standby, or a database with default_transaction_read_only on, refuses the writes
        # of a login and a logout with 25006 (a session's idle-timeout slide is skipped there), an
        # InternalError to psycopg, which made every such request a 500 "internal error" though
        # nothing was wrong with the request or the server: it is unavailable until the database
        # takes writes again
        log.warning("database unavailable: read-only (%s)", error.sqlstate)
        return Problem(HTTPStatus.SERVICE_UNAVAILABLE, READ_ONLY, sqlstate=error.sqlstate)
    if isinstance(error, psycopg.errors.DiskFull):
        # why: a login or logout on a database whose disk is full (53100) answered "the database
        # is unavailable", sending an operator to a server that was answering every read; the
        # log names the file the server could not write
        log.warning("database unavailable: disk full (%s)", error.diag.message_primary)
        return Problem(HTTPStatus.SERVICE_UNAVAILABLE, DISK_FULL, sqlstate=error.sqlstate)
    if isinstance(error, psycopg.Error) and error.sqlstate:
        status = _STATUS_BY_SQLSTATE.get(error.sqlstate) or _STATUS_BY_SQLSTATE.get(error.sqlstate[:2])
        if status is not None:
            column = error.diag.column_name
            return Problem(
                status,
                error.diag.message_primary or status.phrase,
                parameter=PARAMETER_NAMES.get(column, column) if column else None,
                sqlstate=error.sqlstate,
            )
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        log.warning("database unavailable: %s", type(error).__name__)
        return unavailable()
    if isinstance(error, psycopg.DataError) and error.sqlstate is None:
        # raised by psycopg before sending, e.g. a NUL character, which PostgreSQL text cannot hold
        return Problem(HTTPStatus.BAD_REQUEST, "a parameter holds a character PostgreSQL cannot store (NUL)")
    # why no detail: an error the caller did not cause may quote SQL or internal names
    log.error("unexpected database error %s", getattr(error, "sqlstate", None) or type(error).__name__)
    return Problem(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")
