"""Edges of the audit log and of ops.check_invariants' audit checks: session settings of the writer."""

from __future__ import annotations

import psycopg
import pytest

STYLES = ["postgres_verbose", "sql_standard", "iso_8601"]

# intervals of every shape an audited interval column may hold (none may be negative)
INTERVALS = [
    "0",
    "30 minutes",
    "12 hours",
    "1 day",
    "1 day 2 hours",
    "100 hours",
    "1 mon",
    "1 year 2 mons 3 days 04:05:06.5",
    "1 year 5 seconds",
    "2 mons 00:00:01",
    "0.000001 sec",
    "31 days",
]


def violations(conn: psycopg.Connection) -> list[tuple[str, dict, str]]:
    return conn.execute(
        "select invariant, subject, detail from ops.check_invariants() order by 1, 2::text"
    ).fetchall()


@pytest.mark.parametrize("style", STYLES)
def test_a_policy_changed_from_a_session_of_another_interval_style_is_not_reported(seeded, style):
    # to_jsonb writes an interval in the writer's IntervalStyle: the image held "PT31M" and every
    # other interval of the policy, read as differing from the row's "00:31:00" (audit_current) and
    # the next change's old row (audit_chain)
    seeded.execute(psycopg.sql.SQL("set intervalstyle = {}").format(psycopg.sql.Literal(style)))
    seeded.execute("update auth.security_policy set lockout_duration = '31 minutes'")
    seeded.execute("reset intervalstyle")
    seeded.execute("update auth.security_policy set lockout_duration = '32 minutes'")
    assert violations(seeded) == []


@pytest.mark.parametrize("style", STYLES)
def test_an_interval_changed_behind_the_audit_log_is_reported_whatever_the_writers_interval_style(
    seeded, style
):
    seeded.execute(psycopg.sql.SQL("set intervalstyle = {}").format(psycopg.sql.Literal(style)))
    seeded.execute("update auth.security_policy set lockout_duration = '1 day'")
    seeded.execute("set session_replication_role = replica")
    seeded.execute("update auth.security_policy set lockout_duration = '24 hours'")
    seeded.execute("reset session_replication_role")
    seeded.execute("reset intervalstyle")
    assert violations(seeded) == [
        (
            "audit_current",
            {"key": {"singleton": True}, "table": "auth.security_policy"},
            f"differs from audit row {last_audit_id(seeded)}: lockout_duration: "
            f'{one_day(seeded, style)} -> "24:00:00" (image -> row)',
        )
    ]


def last_audit_id(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select max(audit_id) from audit.log where table_name = 'auth.security_policy'"
    ).fetchone()[0]


def one_day(conn: psycopg.Connection, style: str) -> str:
    return conn.execute(
        psycopg.sql.SQL(
            "select set_config('intervalstyle', {}, true), to_jsonb('1 day'::interval)::text"
        ).format(psycopg.sql.Literal(style))
    ).fetchone()[1]


@pytest.mark.parametrize("style", STYLES)
def test_every_interval_written_in_another_style_is_read_as_the_same_interval(db, style):
    written = db.execute(
        psycopg.sql.SQL(
            "select set_config('intervalstyle', {}, true), array_agg(to_jsonb(v::interval) order by n)"
            " from unnest(%s::text[]) with ordinality u (v, n)"
        ).format(psycopg.sql.Literal(style)),
        [INTERVALS],
    ).fetchone()[1]
    db.rollback()
    same = db.execute(
        "select array_agg(internal.same_interval(w, to_jsonb(v::interval)) order by n)"
        " from unnest(%s::jsonb[], %s::text[]) with ordinality u (w, v, n)",
        [[psycopg.types.json.Jsonb(w) for w in written], INTERVALS],
    ).fetchone()[0]
    assert same == [True] * len(INTERVALS)


@pytest.mark.parametrize(
    "text", ["1 day 1 day", "99999999999 years", "@ ", "P", "PT", "2026-12-06", "@ 1 day 1 day"]
)
def test_text_that_is_not_an_interval_the_cast_accepts_is_not_read_as_one(db, text):
    assert db.execute("select internal.interval_text(to_jsonb(%s::text))", [text]).fetchone() == (None,)


def test_a_table_keyed_by_a_column_with_a_non_ascii_name_is_checked_by_that_column(db):
    # internal.audited_tables read the trigger's arguments as encode(tgargs, 'escape'), which
    # writes every byte above 0x7f as \ooo: the key "clé" was looked up as "cl\303\251"
    db.execute('create table public.labels ("clé" integer primary key, label text)')
    db.execute(
        "create trigger audit_insert after insert on public.labels referencing new table as new_rows"
        " for each statement execute function audit.log_changes('clé')"
    )
    db.execute("insert into public.labels values (1, 'one')")
    assert db.execute(
        "select key1 from internal.audited_tables() where table_name = 'public.labels'"
    ).fetchone() == ("clé",)
    assert violations(db) == []
