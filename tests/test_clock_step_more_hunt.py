"""More of the server's wall clock stepping (tests/clock_helpers.py, the cluster of
tests/test_clock_step_hunt.py): sessions and lockouts, alert rules. A forward jump may end things
early (every session past its idle timeout); a clock set right after running ahead must not make
a security window or a stuck state last the whole step more."""

from __future__ import annotations

import psycopg
import pytest

import test_clock_step_hunt as steppable
from auth_helpers import PASSWORD, login, make_user
from clock_helpers import Clock
from db_fixtures import _seed
from trading_helpers import rows

# the steppable cluster's fixtures, as tests/test_clock_step_hunt.py defines them
clock_cluster, clock, stepped_url, stepped = (
    steppable.clock_cluster,
    steppable.clock,
    steppable.stepped_url,
    steppable.stepped,
)


def auth_policy(conn: psycopg.Connection) -> None:
    """The seeded database with a test-speed policy (bcrypt cost 4, no role that must use 2FA)."""
    _seed(conn)
    conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")


def test_a_session_used_while_the_clock_ran_ahead_ends_when_it_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # its idle expiry was written three hours ahead: it must not live three hours past its timeout
    auth_policy(stepped)
    make_user(stepped, "alice")
    clock.set("+3h")
    token = login(stepped, "alice")["session_token"]
    clock.set("+0")
    with pytest.raises(psycopg.Error) as raised:
        stepped.execute("select * from auth.validate_session(%s)", [token])
    assert raised.value.sqlstate == "28S02"


def test_a_session_lives_on_across_a_step_back_of_seconds(stepped: psycopg.Connection, clock: Clock) -> None:
    auth_policy(stepped)
    make_user(stepped, "alice")
    clock.set("+20s")
    token = login(stepped, "alice")["session_token"]
    clock.set("+0")
    assert stepped.execute("select username from auth.validate_session(%s)", [token]).fetchone() == ("alice",)


def test_a_lockout_begun_while_the_clock_ran_ahead_ends_when_it_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # locked for 30 minutes at a time three hours ahead: once the clock is set right the account
    # must not stay locked three and a half hours
    auth_policy(stepped)
    make_user(stepped, "alice")
    clock.set("+3h")
    for _ in range(5):
        assert login(stepped, "alice", password="wrong")["success"] is False
    locked_then = stepped.execute(
        "select is_locked from auth.user_accounts where username = 'alice'"
    ).fetchone()
    clock.set("+0")
    locked_now = stepped.execute(
        "select is_locked, failed_logins from auth.user_accounts where username = 'alice'"
    ).fetchone()
    assert (locked_then, locked_now, login(stepped, "alice")["success"]) == ((True,), (False, 0), True)


def test_failures_while_the_clock_ran_ahead_count_afresh_once_it_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # four failures three hours ahead and one after the clock is set right: no lockout
    auth_policy(stepped)
    user_id = make_user(stepped, "alice")
    clock.set("+3h")
    for _ in range(4):
        login(stepped, "alice", password="wrong")
    clock.set("+0")
    login(stepped, "alice", password="wrong")
    state = stepped.execute(
        "select failed_logins, locked_until from auth.users where user_id = %s", [user_id]
    ).fetchone()
    assert state == (1, None)


def test_a_lockout_still_holds_after_a_forward_jump_shorter_than_it(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    auth_policy(stepped)
    make_user(stepped, "alice")
    for _ in range(5):
        login(stepped, "alice", password="wrong")
    clock.set("+10m")
    assert login(stepped, "alice", password=PASSWORD)["success"] is False


def order_rule(conn: psycopg.Connection, value: str) -> None:
    """Rule order-test (app.order_test > 10 over a minute, slack, 15-minute cooldown) and the
    metric's value at the server's clock."""
    _seed(conn)
    record(conn, value)
    conn.execute(
        "select monitor.add_alert_rule(name => 'order-test', kind => 'system', operator => '>',"
        " threshold => 10, metric => 'app.order_test', channels => '{slack}',"
        " evaluation_window => '1 minute', cooldown => '15 minutes')"
    )


def record(conn: psycopg.Connection, value: str) -> None:
    conn.execute(
        "select monitor.record_metric(name => 'app.order_test', value => %s::numeric,"
        " recorded_at => clock_timestamp())",
        [value],
    )


def transitions(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    return [(row["transition"], row["notified"]) for row in rows(conn, "monitor.evaluate_alert_rules")]


def test_an_alert_opened_while_the_clock_ran_ahead_resolves_once_it_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # the alert opened three hours ahead; its condition clears after the clock is set right: it
    # must resolve at the next run, not three hours later
    clock.set("+3h")
    order_rule(stepped, "20")
    assert transitions(stepped) == [("fired", True)]
    clock.set("+0")
    record(stepped, "5")
    assert transitions(stepped) == [("resolved", True)]
    story = stepped.execute("select bool_and(resolved_at >= opened_at) from monitor.alerts").fetchone()
    assert story == (True,)


def test_a_rule_resolved_while_the_clock_ran_ahead_opens_an_alert_once_it_is_set_right(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    # fired and resolved three hours ahead; firing again after the clock is set right opens an
    # alert at once (inside the cooldown of the notification three hours ahead: not notified)
    clock.set("+3h")
    order_rule(stepped, "20")
    transitions(stepped)
    stepped.execute("delete from monitor.metrics")
    record(stepped, "5")
    assert transitions(stepped) == [("resolved", True)]
    clock.set("+0")
    stepped.execute("delete from monitor.metrics")
    record(stepped, "30")
    assert transitions(stepped) == [("fired", False)]
    opened = stepped.execute("select count(*) from monitor.alerts where status = 'firing'").fetchone()
    assert opened == (1,)


def test_a_backfill_earlier_than_a_rules_latest_transition_still_leaves_it_alone(
    stepped: psycopg.Connection, clock: Clock
) -> None:
    order_rule(stepped, "20")
    assert transitions(stepped) == [("fired", True)]
    record(stepped, "5")
    # a run at an hour ago (a backfill, not a clock step) resolves nothing before the opening
    backfill = stepped.execute(
        "select count(*) from monitor.evaluate_alert_rules(evaluated_at => now() - interval '1 hour')"
    ).fetchone()
    assert backfill == (0,)
