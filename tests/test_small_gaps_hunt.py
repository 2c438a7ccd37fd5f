"""Small gaps: a session logged in without a code outliving 2FA enrollment, times the API and the CLI
refused though ISO 8601 allows them (an hour-only offset, a lower-case z), messages that showed a
null as <NULL>, instrument sizes no order can work with, and README lines the database or the CLI
contradicts."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import click
import psycopg
import pytest

from api_fixtures import T0, Api
from auth_helpers import PASSWORD, events, login, make_user
from db_fixtures import PROJECT
from spreadedge.cli import main
from spreadedge.cluster import PG_BINDIR
from test_api_history import order_ids
from test_auth_more_edges import session_is_live
from test_auth_totp import code_at, db_now
from test_cli_trading import _trades_since
from test_instruments import upsert
from trading_helpers import call, counts, rows

README = (PROJECT / "README.md").read_text(encoding="utf-8")


# -- 1. confirming 2FA ends the sessions logged in without a code --------------------------------


def confirm(conn: psycopg.Connection, user_id: int, secret: str, *, token: str | None = None) -> None:
    """auth.confirm_totp with the authenticator's current code, in one transaction (scoped to the
    session of `token` first, when given, as a request of that session would be)."""
    with conn.transaction():
        if token is not None:
            call(conn, "auth.validate_session", token=token)
        call(conn, "auth.confirm_totp", user_id=user_id, password=PASSWORD,
             totp_code=code_at(secret, db_now(conn), -1))  # fmt: skip


def test_confirming_2fa_revokes_the_users_sessions_logged_in_with_the_password_alone(auth_db):
    user_id = make_user(auth_db, "alice")
    other_id = make_user(auth_db, "bob")
    stolen = login(auth_db, "alice")["session_token"]
    desk = login(auth_db, "alice")["session_token"]
    bobs = login(auth_db, "bob")["session_token"]
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)

    confirm(auth_db, user_id, enrollment["secret"])

    # a session stolen before enrollment ended with it; another user's is untouched
    assert (session_is_live(auth_db, stolen), session_is_live(auth_db, desk)) == (False, False)
    assert session_is_live(auth_db, bobs) is True
    assert auth_db.execute(
        "select user_id, revoked_reason from auth.sessions order by session_id"
    ).fetchall() == [(user_id, "2FA required"), (user_id, "2FA required"), (other_id, None)]
    assert [e["details"] for e in events(auth_db, "session_revoked")] == [
        {"sessions": 2, "reason": "2FA required"}
    ]


def test_confirming_2fa_in_a_session_ends_that_session_too_and_a_login_with_a_code_works(auth_db):
    user_id = make_user(auth_db, "alice")
    token = login(auth_db, "alice")["session_token"]
    [enrollment] = rows(auth_db, "auth.enroll_totp", user_id=user_id, password=PASSWORD)

    confirm(auth_db, user_id, enrollment["secret"], token=token)

    # the calling session was logged in without a code as well: the user logs in again with one
    assert session_is_live(auth_db, token) is False
    with auth_db.transaction():
        again = login(auth_db, "alice", totp_code=code_at(enrollment["secret"], db_now(auth_db), 1))
    assert (again["success"], session_is_live(auth_db, again["session_token"])) == (True, True)


# -- 2. the REST API takes an hour-only UTC offset -----------------------------------------------


def at_offset(minutes: int, hours: int) -> str:
    """T0 + minutes written at a UTC offset of whole hours, the offset as ISO 8601's ±hh."""
    moment = (T0 + timedelta(minutes=minutes)).astimezone(timezone(timedelta(hours=hours)))
    return f"{moment:%Y-%m-%dT%H:%M:%S}{hours:+03d}"


def test_the_api_reads_an_hour_only_utc_offset_as_iso_8601_allows(api: Api, ids: dict[str, int]) -> None:
    # start 01:00 UTC written 06:00+05, end 03:00 UTC written 2026-...T22:00:00-05 the day before
    assert at_offset(60, 5).endswith("+05") and at_offset(180, -5).endswith("-05")
    assert order_ids(api, start_date=at_offset(60, 5), end_date=at_offset(180, -5)) == [ids["a3"], ids["a2"]]


# -- 3. the CLI takes a lower-case z -------------------------------------------------------------


def test_pnl_since_with_a_lower_case_z_is_utc(seeded, db_url):
    assert _trades_since(seeded, db_url, "T12:00:00z") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T00:00:00z", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01 10:30z", datetime(2026, 12, 1, 10, 30, tzinfo=UTC)),
        (" 2026-12-01T00:00:00.5z\n", datetime(2026, 12, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_the_clis_time_parser_reads_a_lower_case_z_as_utc(text: str, expected: datetime) -> None:
    # one parser for pnl --since/--until and restore --target-time
    from spreadedge.pnl import iso_moment

    assert iso_moment(text) == expected


# -- 4. a null in a 22S09 message reads null ----------------------------------------------------


NULL_MESSAGES = [
    (
        "select trading.create_strategy(name => null)",
        "strategy name must be 1 to 100 characters without surrounding spaces, got null",
    ),
    (
        "select trading.take_portfolio_snapshot(valuation_asset => null)",
        "valuation_asset null is an asset no instrument trades",
    ),
    ("select market.stage_rows(null)", "kind null is not quotes, ticks or candles"),
    (
        "select * from market.spread_opportunities(symbol => null, since => now(), until => now())",
        "symbol null is not BASE/QUOTE",
    ),
    (
        "select * from market.spread_opportunities(symbol => 'BTC/USDT', since => null, until => null)",
        "since null and until null are not a period",
    ),
    (
        "select * from market.spread_opportunities(symbol => 'BTC/USDT', since => now(), until => now(),"
        " bucket => null)",
        "bucket null is not between 0 and 1 day",
    ),
    ("select market.rollup_candles(open_window => null)", "open_window null must be zero or more"),
    (
        "select * from market.sma('binance', 'BTCUSDT', '1m', null)",
        "indicator periods and bollinger k must not be null: sma null, ema 20, rsi 14, bollinger 20"
        " and k 2, atr 14, macd 12/26/9",
    ),
    (
        "select * from ops.index_advice(statements => null, min_saving => null, gin_trial_max_mb => null)",
        "index advice needs statements >= 1, 0 < min_saving < 1 and gin_trial_max_mb >= 0,"
        " got null, null and null",
    ),
]


@pytest.mark.parametrize(("query", "message"), NULL_MESSAGES, ids=lambda v: v[:60])
def test_a_null_argument_reads_null_in_the_invalid_argument_message(seeded, query, message):
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute(query)
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)


def test_a_null_backoff_reads_null_in_fail_notifications_message(seeded):
    from monitor_helpers import fire_btc_above_70k

    fire_btc_above_70k(seeded, ["slack"])
    with seeded.transaction(force_rollback=True):
        (claimed,) = rows(seeded, "monitor.claim_notifications", worker="w", channels=["slack"])
        with pytest.raises(psycopg.Error) as caught, seeded.transaction():
            call(seeded, "monitor.fail_notification", notification_id=claimed["notification_id"], worker="w",
                 error="503", max_attempts=None, backoff=None, max_backoff=None)  # fmt: skip
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "max_attempts must be at least 1 and the backoffs zero or more, got null, null, null",
    )


def test_no_function_writes_a_null_as_the_text_NULL_in_brackets():
    # the placeholder of a null in RAISE is <NULL>; a message shows the word null
    found = [
        f"{path.name}:{number}"
        for path in sorted((PROJECT / "functions").glob("*.sql*"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "'<NULL>'" in line
    ]
    assert found == []


# -- 6. instrument sizes no order can work with ---------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("tick_size", "tick size must be below 10^15, got 1.000e+300"),
        ("lot_size", "lot size must be below 10^15, got 1.000e+300"),
        ("min_notional", "minimum notional must be below 10^15, got 1.000e+300"),
    ],
)
def test_a_tick_lot_or_minimum_notional_of_1e300_is_an_invalid_argument(seeded, rule, message):
    before = counts(seeded)
    with pytest.raises(psycopg.Error) as caught:
        upsert(seeded, symbol="HUGEUSDT", base_asset="HUGE", **{rule: D("1e300")})
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
    assert counts(seeded) == before


def test_an_update_to_a_tick_size_of_10_to_the_15_is_refused_and_keeps_the_listed_one(seeded):
    with pytest.raises(psycopg.Error) as caught:
        upsert(seeded, tick_size=D("1e15"))
    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "tick size must be below 10^15, got 1000000000000000",
    )
    [(tick_size,)] = seeded.execute(
        "select tick_size from ref.instruments where symbol = 'BTCUSDT'"
    ).fetchall()
    assert tick_size == D("0.01")


def test_sizes_just_below_10_to_the_15_are_listed(seeded):
    largest = D("999999999999999")
    upsert(
        seeded, symbol="BIGUSDT", base_asset="BIG", tick_size=largest, lot_size=largest, min_notional=largest
    )
    assert seeded.execute(
        "select tick_size, lot_size, min_notional from ref.instruments where symbol = 'BIGUSDT'"
    ).fetchone() == (largest, largest, largest)


# -- 5. README lines the database and the CLI contradict ----------------------------------------


def _dn_comment() -> str:
    """The comment of the README's `\\dn` line, with the comment lines that continue it."""
    lines = README.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith("\\dn ")]
    comment = [lines[start].split("--", 1)[1]]
    for line in lines[start + 1 :]:
        if not line.lstrip().startswith("--") or not line.startswith(" "):
            break
        comment.append(line.split("--", 1)[1])
    return " ".join(comment)


def test_the_readmes_dn_line_names_every_schema_dn_lists(db_url: str) -> None:
    program = PG_BINDIR / "psql"
    listed = subprocess.run(
        [str(program) if program.exists() else "psql", "-X", "-A", "-t", "-d", db_url, "-c", r"\dn"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    schemas = {line.split("|")[0] for line in listed.splitlines() if line}
    assert "public" in schemas
    named = set(re.findall(r"[a-z_]+", _dn_comment()))
    assert schemas - named == set()


def test_the_readme_gives_demos_orders_range_as_the_cli_checks_it() -> None:
    [option] = [p for p in main.commands["demo"].params if p.name == "orders"]
    assert isinstance(option.type, click.IntRange)
    cli_block = README[README.index("## The CLI") :]
    demo = " ".join(cli_block[cli_block.index("spreadedge demo") :].split("\nspreadedge ", 1)[0].split())
    # it said "any --orders"; the CLI takes 10 to 1,000,000
    assert f"--orders N takes {option.type.min:,} to {option.type.max:,}" in demo
    assert "any --orders" not in demo
