"""Defects found reviewing this session's changes (PgBouncer support), each against a real PgBouncer
(tests/pgbouncer_helpers.py) in front of the session's cluster.
"""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from pgbouncer_helpers import pgbouncer, pooled_url
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.migrate import MigrationError, migrate
from spreadedge.settings import Settings


def through(port: int, url: str) -> str:
    """``url``'s database through the pooler on ``port``."""
    return pooled_url(port, conninfo_to_dict(url)["dbname"])


def test_partitions_maintain_runs_through_a_transaction_pooler(pg_cluster: Cluster, seeded_url: str) -> None:
    # ops.run_partition_maintenance commits table by table: wrapped in the pinned connection's
    # transaction it failed with 2D000 "invalid transaction termination"
    with pgbouncer(pg_cluster) as port:
        result = CliRunner().invoke(
            main,
            ["--database-url", through(port, seeded_url), "partitions", "maintain"],
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    assert "invalid transaction termination" not in result.output


def test_migrate_through_a_session_pooler_is_not_told_to_use_a_session_pooler(
    pg_cluster: Cluster, db_url: str, project_settings: Settings
) -> None:
    # PgBouncer invents the process id it reports in session pooling too, so a session-pooled URL
    # is refused as a transaction-pooled one is: the hint must not send the operator to it
    with pgbouncer(pg_cluster, pool_mode="session") as port, pytest.raises(MigrationError) as refused:
        migrate(through(port, db_url), project_settings, echo=lambda line: None)
    message = str(refused.value)
    assert "session-pooled" not in message
    assert "use the database server's own URL for it, not the pooler's" in message
    with psycopg.connect(db_url, autocommit=True) as direct:
        locks = direct.execute("select count(*) from pg_locks where locktype = 'advisory'").fetchone()
    assert locks == (0,)
