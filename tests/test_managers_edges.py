"""Edges of the async managers: connections that stop answering, locks, cancellation, reuse."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import pytest

from spreadedge import managers
from spreadedge.managers import ManagerConfig, PersistentOrderManager, get_database_manager
from spreadedge.settings import Settings

# why a guard: without the fixes these calls never return; the guard turns a hang into a failure
GUARD = 60


@pytest.fixture
def config(seeded_url: str, project_settings: Settings) -> ManagerConfig:
    return ManagerConfig(database_url=seeded_url, actor="edges", settings=project_settings)


def backend_of(url: str, application_name: str) -> int:
    """The server process of the one connection named ``application_name``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select pid from pg_stat_activity where application_name = %s", [application_name]
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The server process ``pid`` stopped (SIGSTOP): its connection stays open and never answers,
    as after a network partition or on a frozen host."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_call_on_a_connection_that_stopped_answering_raises_database_unavailable(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = replace(
        config,
        database_url=f"{seeded_url}&application_name=edge-frozen-call",
        min_connections=1,
        max_connections=1,
        timeout=0.5,
    )

    async def run() -> str:
        async with PersistentOrderManager(config) as manager:
            with frozen(backend_of(seeded_url, "edge-frozen-call")):
                try:
                    await asyncio.wait_for(manager.get_active_orders(), GUARD)
                except managers.DatabaseUnavailable as exc:
                    return str(exc)
        return "no error"

    assert asyncio.run(run()) == "the database is unavailable: no working connection within 0.5 s"


def test_health_check_on_a_connection_that_stopped_answering_reports_the_database_down(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = replace(
        config,
        database_url=f"{seeded_url}&application_name=edge-frozen-health",
        min_connections=1,
        max_connections=1,
        health_timeout=0.5,
    )

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            assert (await manager.health_check()).healthy
            with frozen(backend_of(seeded_url, "edge-frozen-health")):
                return await asyncio.wait_for(manager.health_check(), GUARD)
        finally:
            await manager.close()

    assert asyncio.run(run()) == managers.HealthReport(
        False, {"database": (False, "the database is unavailable: no working connection within 0.5 s")}
    )


def test_health_check_while_a_partitioned_table_is_locked_reports_that_ops_health_did_not_answer(
    config: ManagerConfig, seeded_url: str
) -> None:
    config = replace(config, health_timeout=0.5)

    async def run() -> managers.HealthReport:
        manager = get_database_manager(config)
        try:
            with psycopg.connect(seeded_url) as blocker:
                # as a migration altering trading.orders, or pg_partman moving rows, holds it
                blocker.execute("lock table trading.orders in access exclusive mode")
                try:
                    return await asyncio.wait_for(manager.health_check(), GUARD)
                finally:
                    blocker.rollback()
        finally:
            await manager.close()

    assert asyncio.run(run()) == managers.HealthReport(
        False,
        {"database": (True, "reachable"), "health": (False, "ops.health did not answer within 0.5 s")},
    )
