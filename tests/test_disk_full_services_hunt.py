"""The disk fills up under the services: what the async managers and the notification worker do
when the server cannot write (53100, disk_full), and once space is freed.

The module's cluster lives on file systems of its own (tests/disk_helpers.py; root only: the
module skips elsewhere): its data directory on a small ext4 image, its pg_wal on a small tmpfs,
each filled with a ballast file written as the server's user, and unmounted at the end of the
module, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal

import psycopg
import pytest

from db_fixtures import _seed
from disk_helpers import Disks, disk_cluster, requires_root
from notify_servers import HttpReceiver, Received, queue, slack_worker
from spreadedge import managers
from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager
from spreadedge.notify import Worker
from spreadedge.settings import Settings
from trading_helpers import call

pytestmark = requires_root

# every wait on a manager's call is capped at this, so a hang is a failure and not a stuck run
GUARD = 30


@pytest.fixture(scope="module")
def disks(project_settings: Settings) -> Iterator[Disks]:
    with disk_cluster(project_settings, _seed) as cluster_disks:
        yield cluster_disks


@pytest.fixture
def manager_config(disks: Disks, project_settings: Settings) -> ManagerConfig:
    return ManagerConfig(
        database_url=disks.url, actor="disk-full", settings=project_settings, timeout=10, health_timeout=5
    )


def _order(client_order_id: str) -> OrderRequest:
    return OrderRequest(
        strategy="alpha",
        exchange="binance",
        symbol="BTCUSDT",
        side="buy",
        quantity=Decimal("0.2"),
        price=Decimal("100"),
        client_order_id=client_order_id,
    )


def _written(url: str) -> tuple[int, ...]:
    """How many rows the write path's tables hold."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select (select count(*) from trading.orders), (select count(*) from trading.order_events),"
            " (select count(*) from trading.trades), (select count(*) from trading.positions),"
            " (select count(*) from audit.log)"
        ).fetchone()
    assert row is not None
    return tuple(row)


# -- the async managers -------------------------------------------------------------------------


def test_a_placement_on_a_full_disk_is_database_full_and_places_it_once_space_returns(
    disks: Disks, manager_config: ManagerConfig
) -> None:
    # the server's psycopg.errors.DiskFull reached the caller, none of the managers' classes: code
    # that handles DatabaseUnavailable (retry later) let it through as an unexpected error
    async def run() -> tuple[managers.DatabaseUnavailable, tuple[int, ...], managers.Order]:
        async with PersistentOrderManager(manager_config) as manager:
            with disks.full(disks.data):
                with pytest.raises(managers.DatabaseUnavailable) as refused:
                    await asyncio.wait_for(manager.place_order(_order("full-1")), GUARD)
                written = _written(disks.url)
            placed = await asyncio.wait_for(manager.place_order(_order("full-1")), GUARD)
            return refused.value, written, placed

    before = _written(disks.url)
    error, written, placed = asyncio.run(run())

    assert (type(error), error.sqlstate, error.maybe_committed) == (managers.DatabaseFull, "53100", False)
    assert str(error).startswith("the database server's disk is full: could not extend file \"")
    assert str(error).endswith(
        '": No space left on device; nothing of the call was committed: retry once space is freed'
    )
    assert written == before
    assert (placed.client_order_id, placed.status) == ("full-1", "new")


def test_a_fill_on_a_full_disk_is_database_full_and_recorded_once_space_returns(
    disks: Disks, manager_config: ManagerConfig
) -> None:
    async def run() -> tuple[managers.DatabaseUnavailable, tuple[int, ...], tuple[int, ...], int, int]:
        async with PersistentOrderManager(manager_config) as manager:
            order = await asyncio.wait_for(manager.place_order(_order("full-fill-1")), GUARD)
            fill = {"quantity": Decimal("0.2"), "price": Decimal("100"), "fee": Decimal("0.02")}
            before = _written(disks.url)
            with disks.full(disks.data):
                with pytest.raises(managers.DatabaseUnavailable) as refused:
                    await asyncio.wait_for(manager.record_fill(order.order_id, "full-trade-1", **fill), GUARD)
                written = _written(disks.url)
            trade_id = await asyncio.wait_for(
                manager.record_fill(order.order_id, "full-trade-1", **fill), GUARD
            )
            again = await asyncio.wait_for(manager.record_fill(order.order_id, "full-trade-1", **fill), GUARD)
            return refused.value, before, written, trade_id, again

    error, before, written, trade_id, again = asyncio.run(run())

    assert (type(error), error.sqlstate, error.maybe_committed) == (managers.DatabaseFull, "53100", False)
    assert error.diag.message_hint == "Check free disk space."
    assert str(error).endswith(
        ": No space left on device; nothing of the call was committed: retry once space is freed"
    )
    assert written == before
    assert again == trade_id  # the fill delivered again: recorded once


# -- the notification worker --------------------------------------------------------------------

FILLER = (
    "insert into monitor.notifications (channel, status, subject, payload, risk_event_id, delivered_at)"
    " select 'slack', 'delivered', '', '{}', risk_event_id, now() from monitor.notifications"
    " order by notification_id limit 1"
    " returning (ctid::text::point)[0]::int"
)


def _one_pending(conn: psycopg.Connection) -> int:
    """An outbox holding one pending slack message (the kill switch of alpha turned on); its id."""
    call(conn, "monitor.set_kill_switch", strategy="alpha", enabled=False, reason="test")
    conn.execute("truncate monitor.notifications")
    queue(conn, "slack")
    [(notification_id,)] = conn.execute("select notification_id from monitor.notifications").fetchall()
    return int(notification_id)


def _fill_outbox_pages(url: str) -> None:
    """Delivered rows added to a small outbox until every page of it is full, as the history of an
    outbox fills its pages: a claim or a report, which writes a new version of its row, then needs
    a new page, which a full disk refuses.

    The rows are alike, so a page holds as many as the first page they filled whole, and the last
    page is full once it holds that many.
    """
    per_page: Counter[int] = Counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while len(per_page) < 3 or per_page[max(per_page)] < per_page[sorted(per_page)[1]]:
            [(page,)] = conn.execute(FILLER).fetchall()
            per_page[page] += 1
            assert len(per_page) <= 3, "the outbox had room before its last page"


@contextlib.contextmanager
def _running(worker: Worker) -> Iterator[None]:
    """``worker`` running (poll 0.1 s) in a thread of its own, stopped and joined on the way out."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop, poll_seconds=0.1)
        except BaseException as exc:  # the thread's outcome, asserted below
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        worker.close()
    assert not thread.is_alive() and failures == []


def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _status(url: str, notification_id: int) -> tuple[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select status::text, attempts from monitor.notifications where notification_id = %s",
            [notification_id],
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "spreadedge.notify"
    ]


DISK_FULL_BACKOFF = re.compile(
    r'worker b cannot claim notifications \(could not extend file "[^"]+": No space left on device\): '
    r"the database server's disk is full; trying again in (\S+) s"
)


def test_the_worker_on_a_full_disk_says_so_backs_off_and_delivers_once_when_space_returns(
    disks: Disks, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # it logged "lost the database connection (could not extend file ...)" of a server that
    # answered, and tried again every 5 s for as long as the disk was full
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with psycopg.connect(disks.url, autocommit=True) as conn:
        notification_id = _one_pending(conn)
    _fill_outbox_pages(disks.url)

    disks.fill(disks.data)
    try:
        with _running(slack_worker(disks.url, http_receiver)):
            _until(lambda: len(_warnings(caplog)) >= 3, "three refusals logged")
            sent_while_full = len(http_receiver.requests)
            disks.free()
            _until(lambda: _status(disks.url, notification_id)[0] == "delivered", "delivered")
    finally:
        disks.free()

    full = [DISK_FULL_BACKOFF.fullmatch(line) for line in _warnings(caplog)]
    assert all(full), _warnings(caplog)
    assert [m.group(1) for m in full if m][:3] == ["0.1", "0.2", "0.4"]
    assert sent_while_full == 0
    assert len(http_receiver.requests) == 1
    assert _status(disks.url, notification_id) == ("delivered", 1)


def test_a_message_sent_whose_delivery_a_full_disk_cannot_record_is_logged_and_sent_again(
    disks: Disks, http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # it is sent again (at least once), and the log said only "lost the database connection": a
    # receiver that got it twice, or more, had no trace of why
    caplog.set_level(logging.WARNING, logger="spreadedge.notify")
    with psycopg.connect(disks.url, autocommit=True) as conn:
        notification_id = _one_pending(conn)

    def fill_once(received: Received) -> None:
        if len(http_receiver.requests) == 1:  # the first send: the disk fills while it is answered
            _fill_outbox_pages(disks.url)
            disks.fill(disks.data)

    http_receiver.on_post = fill_once
    try:
        with _running(slack_worker(disks.url, http_receiver, timeout_seconds=60)):
            _until(lambda: len(_warnings(caplog)) >= 4, "the unrecorded send and refusals logged")
            disks.free()
            _until(lambda: _status(disks.url, notification_id)[0] == "delivered", "delivered")
    finally:
        disks.free()

    warnings = _warnings(caplog)
    unrecorded = (
        f"notification {notification_id} (slack) attempt 1: the database did not record its outcome (could "
        'not extend file "'
    )
    resent = '": No space left on device): it is pending again and is sent again, even if this attempt reached the receiver (delivery is at least once)'
    sends = len(http_receiver.requests)
    assert sends >= 2
    assert len({r.body for r in http_receiver.requests}) == 1  # the one message, each time
    # every send but the last, which was recorded, is one such warning
    notes = [w for w in warnings if w.startswith("notification ")]
    assert len(notes) == sends - 1
    assert all(w.startswith(unrecorded) and w.endswith(resent) for w in notes), notes
    assert all(DISK_FULL_BACKOFF.fullmatch(w) for w in warnings if w.startswith("worker "))
    assert _status(disks.url, notification_id) == ("delivered", 1)


# -- pg_wal full: the server PANICs (last: this crashes the module's server, and starts it again) --


def test_a_placement_that_fills_pg_wal_is_database_full_saying_the_server_stopped(
    disks: Disks, manager_config: ManagerConfig
) -> None:
    # psycopg's DiskFull reached the caller, which could not tell that the server had stopped, nor
    # whether the placement had been committed
    acknowledged: list[str] = []

    async def run() -> psycopg.Error:
        async with PersistentOrderManager(manager_config) as manager:
            for n in range(200_000):  # far more WAL than the disk holds
                try:
                    await asyncio.wait_for(manager.place_order(_order(f"wal-{n}")), GUARD)
                except psycopg.Error as exc:
                    return exc
                acknowledged.append(f"wal-{n}")
        raise AssertionError("pg_wal never filled")

    with psycopg.connect(disks.url, autocommit=True) as conn:
        conn.execute("checkpoint")
    disks.fill(disks.wal)
    try:
        error = asyncio.run(run())
        _until(lambda: not disks.cluster.status().running, "the server stopped")
    finally:
        disks.free()
        assert disks.cluster.start() is True
    with psycopg.connect(disks.url, autocommit=True) as conn:
        placed = [
            client_order_id
            for [client_order_id] in conn.execute(
                "select client_order_id from trading.orders where client_order_id like 'wal-%' order by order_id"
            )
        ]

    assert (type(error), error.sqlstate, error.diag.severity_nonlocalized) == (
        managers.DatabaseFull,
        "53100",
        "PANIC",
    )
    assert isinstance(error, managers.DatabaseFull)
    assert str(error).startswith(
        "the database server's disk is full: could not write to file \"pg_wal/xlogtemp."
    )
    stopped = '": No space left on device; the server stopped (PANIC): free space and start it; '
    if error.maybe_committed:  # it stopped while the placement committed: placed or not
        assert (
            stopped + "it stopped while the call committed, so the call may or may not have been committed"
            in str(error)
        )
        assert placed in (acknowledged, [*acknowledged, f"wal-{len(acknowledged)}"])
    else:
        assert str(error).endswith(stopped + "nothing of the call was committed")
        assert placed == acknowledged
