"""The API's one way to the database: each request one statement, scoped to its session's user."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from api_fixtures import Api
from spreadedge.api import create_app, database


def with_pool(url: str, work: Callable[[AsyncConnectionPool], Awaitable[Any]]) -> Any:
    """``work(pool)`` on a one-connection API pool, so that every call reuses the same connection."""

    async def run() -> Any:
        pool = database.make_pool(url, min_size=1, max_size=1)
        await pool.open(wait=True)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def test_the_function_runs_for_the_user_of_the_token(
    api: Api, history_db: tuple[str, dict[str, int]]
) -> None:
    url, ids = history_db

    async def work(pool: AsyncConnectionPool) -> Any:
        return await database.call(pool, "internal.session_user_id", {}, token=api.tokens["alice"])

    assert with_pool(url, work) == ids["alice"]


def test_the_users_scope_ends_with_the_request(api: Api, history_db: tuple[str, dict[str, int]]) -> None:
    url, ids = history_db

    async def work(pool: AsyncConnectionPool) -> tuple[Any, Any]:
        scoped = await database.call(pool, "internal.session_user_id", {}, token=api.tokens["bob"])
        after = await database.call(pool, "internal.session_user_id", {}, token=None)
        return scoped, after

    scoped, after = with_pool(url, work)
    assert scoped == ids["bob"]
    assert after is None


def test_an_unknown_token_raises_invalid_session_before_the_function_runs(
    api: Api, history_db: tuple[str, dict[str, int]]
) -> None:
    url, _ids = history_db

    async def work(pool: AsyncConnectionPool) -> Any:
        # auth.logout of alice's token would end her session if it ran
        return await database.call(pool, "auth.logout", {"token": api.tokens["alice"]}, token="not-a-token")

    with pytest.raises(psycopg.Error) as raised:
        with_pool(url, work)
    assert raised.value.sqlstate == "28S02"
    assert api.get("orders", "alice").status_code == 200


def test_an_app_with_a_pool_size_of_one_gets_a_one_connection_pool() -> None:
    # spreadedge serve --pool-size 1 (its lowest allowed value) used to die with a ValueError:
    # the pool's minimum of 2 exceeded its maximum
    app = create_app("postgresql:///unused", [], pool_size=1)
    assert (app.state.pool.min_size, app.state.pool.max_size) == (1, 1)
