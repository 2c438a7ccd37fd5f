"""Two deployments in one PostgreSQL cluster (paper trading and live, or two desks): each a database
of the same server, migrated on its own. What one database reports about itself (health, metrics)
must be about itself, not the other deployment's sessions; what is the server's (roles, pg_cron's
one database, backups) is documented in the README ("Two deployments on one server").

The session's cluster serves both: the test's own database (``db``) and a second clone of the
migrated template, dropped after the test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from db_fixtures import janitor

_names = itertools.count(1)


@pytest.fixture
def other_url(pg_cluster, template_db) -> Iterator[str]:
    """The other deployment: a second migrated database on the same server."""
    name = f"other_deployment_{next(_names)}"
    with janitor(pg_cluster, name, template_db):
        yield pg_cluster.url(name)


def _open_transaction(url: str) -> psycopg.Connection:
    """A session of the database at url left idle in a transaction (as a psql BEGIN)."""
    conn = psycopg.connect(url)
    conn.execute("select txid_current()")
    return conn


# bug: the check counted every database's transactions: a psql BEGIN left open in the paper
# trading database failed the live database's health, naming the other deployment's session
def test_a_transaction_open_in_another_database_does_not_fail_this_ones_health(db, other_url):
    with _open_transaction(other_url):
        row = db.execute("select ok, detail from internal.health_long_transactions('0 seconds')").fetchone()

    assert row == (True, "no transaction open longer than 00:00:00")


def test_a_transaction_open_in_this_database_still_fails_its_health(db, db_url, other_url):
    with _open_transaction(other_url), _open_transaction(db_url) as mine:
        pid = mine.info.backend_pid
        row = db.execute(
            "select ok, detail ~ ('^1 transactions open longer than 00:00:00: pid ' || %s::text || ' ')"
            " from internal.health_long_transactions('0 seconds')",
            [pid],
        ).fetchone()

    assert row == (False, True)


def test_the_health_check_agrees_with_the_oldest_transaction_metric(db, other_url):
    with _open_transaction(other_url):
        metric = db.execute(
            "select value from internal.system_metrics() where name = 'db.oldest_xact_age'"
        ).fetchone()[0]
        check = db.execute("select ok from internal.health_long_transactions('0 seconds')").fetchone()[0]

    assert (metric, check) == (0, True)


# bug: in a database pg_cron does not serve (the second deployment), health said "pg_cron does not
# run in this database", ok, on a server where it runs: nothing said that this database's partition
# maintenance, metrics and alert rules were scheduled nowhere, nor where pg_cron runs
def test_health_names_the_database_pg_cron_serves_when_it_is_another(db):
    row = db.execute("select ok, detail from internal.health_cron_jobs()").fetchone()

    assert row == (
        True,
        "pg_cron runs in database spreadedge, not this one: this database's partition maintenance,"
        " metrics and alert rules run only where they are scheduled (there with"
        " cron.schedule_in_database under job names of their own, or by another scheduler)",
    )
