"""Rules of the audit triggers (functions/90_audit_triggers.sql.j2) that a plausible slip in the
template broke without any other test noticing: each test here kills one or more such mutants (run
both ways: fails with its mutant, passes without). test_ingest_audit_mutants.py covers 80_audit.sql.

The run: 39 mutants, 28 caught by the existing tests (an UPDATE's images swapped in the select or
in the trigger's transition tables, paired in another order or keyed by the old image; an operation
mislabelled; a bulk statement's rows cut to one; a no-op UPDATE left out; a DELETE's image written
as a new image; the old image unredacted; a key cut to its first column, built with ->> or as json;
auth.user_roles or monitor.risk_limits keyed by another column; a table, an insert, update or
delete trigger dropped; a secret of auth.users or auth.api_keys kept; the TRUNCATE trigger fired
after the rows are gone; an UPDATE's actor written as null; the append-only guards of audit.log
and the trades' row trigger dropped), 11 survived: 1 equivalent, and 10 holes, each killed by a
test below (auth.role_permissions, ref.exchange_markets and trading.portfolio_snapshots keyed by a
column their rows share; master_keys' verifier kept, security_policy's updated_at left out; no
TRUNCATE trigger on the auth tables; audit.security_events truncatable; db_role written as
current_user in an UPDATE or a DELETE; the actor written as current_setting, not the column's
default). None left open.

Equivalent: trading.trades' statement trigger losing DELETE (the row trigger
audit.refuse_trade_change refuses every row a DELETE would remove, with the same SQLSTATE 55S02 and
message; only a DELETE matching no row then succeeds, having removed nothing)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from auth_helpers import make_user
from test_audit import _every_audited_table_holding_rows

# tgtype bits (pg_trigger.h): 1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate
AFTER_INSERT, AFTER_DELETE, AFTER_UPDATE, BEFORE_TRUNCATE = 4, 8, 16, 32 | 2


def test_every_audited_table_has_its_four_audit_triggers_whatever_its_schema(seeded):
    # test_audit.py checks the count in ref and trading only: an auth, monitor or ops table without
    # its TRUNCATE trigger lost every row a TRUNCATE removed from the log, and no test noticed
    triggers = seeded.execute("""
        select a.table_name, t.tgname, t.tgtype, p.proname
        from internal.audited_tables() a
        join pg_catalog.pg_trigger t on t.tgrelid = a.relid and t.tgname like '\\_900\\_audit\\_%'
        join pg_catalog.pg_proc p on p.oid = t.tgfoid
        order by 1, 2""").fetchall()
    tables = sorted({table for table, *_ in triggers})
    own = {table: "log_changes_" + table.replace(".", "_") for table in tables}
    assert len(tables) == 22
    assert triggers == [
        row
        for table in tables
        for row in [
            (table, "_900_audit_delete", AFTER_DELETE, own[table]),
            (table, "_900_audit_insert", AFTER_INSERT, own[table]),
            (table, "_900_audit_truncate", BEFORE_TRUNCATE, "log_truncate"),
            (table, "_900_audit_update", AFTER_UPDATE, own[table]),
        ]
    ]


# what each audited table's audit image leaves out: its secrets, and nothing else
SECRETS = {
    "auth.api_keys": {"api_key", "api_secret", "passphrase", "fingerprint"},
    "auth.master_keys": {"verifier"},  # lets a guess at the master key be checked offline
    "auth.users": {"password_hash", "totp_secret"},
}


def _every_audited_table_updated(conn) -> dict[str, tuple[set[str], list[tuple[str, dict]]]]:
    """Every audited table but trading.trades (append-only) holding rows, two portfolio snapshots
    among them, each updated whole by a no-op UPDATE (rolled back): per table, its columns and the
    (row_key, new_row) of each audit row that UPDATE wrote."""
    _every_audited_table_holding_rows(conn)
    conn.execute("select trading.take_portfolio_snapshot()")
    updated = {}
    for table, relid in conn.execute(
        "select table_name, relid::text from internal.audited_tables() where table_name <> 'trading.trades'"
        " order by 1"
    ).fetchall():
        columns = [
            c
            for (c,) in conn.execute(
                "select attname from pg_catalog.pg_attribute where attrelid = %s::regclass and attnum > 0"
                " and not attisdropped order by attnum",
                [relid],
            )
        ]
        writable = conn.execute(
            "select attname from pg_catalog.pg_attribute where attrelid = %s::regclass and attnum > 0"
            " and not attisdropped and attidentity = '' and attgenerated = '' order by attnum limit 1",
            [relid],
        ).fetchone()[0]
        (since,) = conn.execute("select coalesce(max(audit_id), 0) from audit.log").fetchone()
        with conn.transaction(force_rollback=True):
            conn.execute(
                sql.SQL("update {table} set {column} = {column}").format(
                    table=sql.Identifier(*table.split(".")), column=sql.Identifier(writable)
                )
            )
            logged = conn.execute(
                "select row_key, new_row from audit.log where table_name = %s and audit_id > %s",
                [table, since],
            ).fetchall()
        updated[table] = (set(columns), logged)
    return updated


def test_the_rows_one_update_touches_are_each_logged_under_a_key_of_their_own(seeded):
    # a key of fewer or other columns than the row's own (auth.role_permissions keyed by role_name
    # alone, ref.exchange_markets by exchange_id alone, portfolio snapshots by strategy_id) logs
    # two rows of one statement under one key; the replay check reads its keys from the same
    # trigger arguments, so it agreed with such a key
    updated = _every_audited_table_updated(seeded)
    assert [
        table for table, (_, logged) in updated.items() if len({key for key, _ in logged}) != len(logged)
    ] == []
    assert all(logged for _, logged in updated.values())
    # the rows do share those columns, so the check bites: several permissions per role, two
    # market types on one exchange, alpha's two snapshots
    assert seeded.execute(
        "select (select count(*) > count(distinct role_name) from auth.role_permissions),"
        " (select count(*) > count(distinct exchange_id) from ref.exchange_markets),"
        " (select count(*) > count(distinct strategy_id) from trading.portfolio_snapshots)"
    ).fetchone() == (True, True, True)


def test_each_audited_tables_images_hold_every_column_but_its_secrets(seeded):
    # a secret left in (a master key's verifier) leaks it to every auditor; a column left out
    # (auth.security_policy's updated_at) loses it from the trail, and the replay check, which
    # reads the left-out columns from the same trigger arguments, agreed with both
    updated = _every_audited_table_updated(seeded)
    assert {
        table: columns - set(image)
        for table, (columns, logged) in updated.items()
        for _, image in logged
        if columns - set(image) != SECRETS.get(table, set())
    } == {}
    assert set(SECRETS) <= set(updated)


def test_the_security_events_cannot_be_truncated(seeded):
    make_user(seeded, "eve")
    before = seeded.execute("select count(*) from audit.security_events").fetchone()
    with pytest.raises(psycopg.Error) as caught:
        seeded.execute("truncate audit.security_events")
    assert caught.value.sqlstate == "55S02"
    assert (
        caught.value.diag.message_primary == "audit.security_events is append-only: TRUNCATE is not allowed"
    )
    assert seeded.execute("select count(*) from audit.security_events").fetchone() == before


@pytest.mark.parametrize(
    "statement",
    [
        "update trading.strategies set description = 'under a role' where name = 'alpha'",
        "delete from trading.strategies where name = 'gamma'",
    ],
    ids=["update", "delete"],
)
def test_a_change_made_under_set_role_records_the_login_role(seeded, statement):
    # db_role is session_user (the column's default): written as current_user it would name the
    # role set, spreadedge_owner, not who logged in; test_audit_actor_hunt.py pins it for an INSERT
    seeded.execute("select trading.create_strategy(name => 'gamma')")
    login_role = seeded.execute("select session_user::text").fetchone()[0]
    seeded.execute("set role spreadedge_owner")
    try:
        seeded.execute(statement)
    finally:
        seeded.execute("reset role")
    assert login_role != "spreadedge_owner"
    assert seeded.execute(
        "select operation, db_role from audit.log where table_name = 'trading.strategies'"
        " order by audit_id desc limit 1"
    ).fetchone() == (statement.split()[0].upper(), login_role)


def test_an_update_after_a_transaction_local_actor_ended_records_no_actor(seeded):
    # once set local has run, the setting exists and reads '' after its transaction; the actor
    # column's default turns that into null, which an explicit current_setting would not
    with seeded.transaction():
        seeded.execute("set local spreadedge.actor = 'desk-2'")
    seeded.execute("update trading.strategies set description = 'later' where name = 'alpha'")
    assert seeded.execute("select current_setting('spreadedge.actor', true)").fetchone() == ("",)
    assert seeded.execute(
        "select operation, actor from audit.log where table_name = 'trading.strategies'"
        " order by audit_id desc limit 1"
    ).fetchone() == ("UPDATE", None)
