"""Review of the session's second half: a physical backup recorded in the server's other databases
(README "Two deployments on one server", Backups) and the master-key check of the first start
after a restore.

Each test names the defect it proves fixed; the clusters they start are stopped at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from conftest import free_port
from ops_helpers import cli
from pgbouncer_helpers import pgbouncer, pooled_url
from spreadedge.cli_ops import _connect_to
from spreadedge.cluster import Cluster
from spreadedge.ops import catalog, pgbackrest
from spreadedge.settings import Settings

# a database a DROP DATABASE interrupted part way leaves: PostgreSQL 15.4+ marks it invalid
# (datconnlimit -2) and refuses every connection to it, a superuser's too
HALF_DROPPED = "half_dropped"


# bug: the run recorded in another database was started and finished in two transactions, so an
# end that database refused left a run 'running' there for good (health's last_backup and `backup
# list` of that deployment showed a backup in progress that no process ran)
def test_a_backup_run_another_database_refuses_to_finish_leaves_no_run_there(db_url: str) -> None:
    taken = catalog.RunResult(label="20261207-050000F", size_bytes=-1, repo_size_bytes=10)
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as refused:
            catalog.record_taken(conn, "full", "lz4", taken, "spreadedge")
        runs = conn.execute("select status from ops.backup_runs").fetchall()

    assert (refused.value.sqlstate, runs) == ("22S09", [])


# bug: the connections to the other databases set the actor for the session with no regard to a
# pooler, so behind PgBouncer's transaction pooling 'backup' stayed on the server connection it
# lent, and the next client's changes were audited as the backup's
def test_a_connection_to_another_database_leaves_its_actor_to_no_other_client_of_the_pooler(
    pg_cluster: Cluster, db_url: str, project_settings: Settings
) -> None:
    dbname = conninfo_to_dict(db_url)["dbname"]
    with pgbouncer(pg_cluster) as port:
        settings = project_settings.with_database_url(pooled_url(port, dbname))
        with _connect_to(settings)(dbname) as conn:
            conn.execute("select 1")
        with psycopg.connect(pooled_url(port, dbname), autocommit=True) as other:
            row = other.execute("select nullif(current_setting('spreadedge.actor', true), '')").fetchone()

    assert row == (None,)


# bug: a database the superuser cannot connect to (left invalid by an interrupted DROP DATABASE)
# failed the first start after a restore ("connection failed", exit 1) once the server ran, and
# every later `db start` the same way, its restore marker never removed
def test_the_first_start_after_a_restore_warns_of_a_database_it_cannot_read_and_finishes(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(port=free_port())
    cluster.start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(HALF_DROPPED)))
        conn.execute("update pg_catalog.pg_database set datconnlimit = -2 where datname = %s", [HALF_DROPPED])
    marker = pgbackrest.restore_marker(cluster)
    marker.touch()

    result = cli(
        "db", "start", env={"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port)}
    )

    assert (result.exit_code, marker.exists()) == (0, False), result.output
    assert (
        f"warning: database {HALF_DROPPED}: its API keys could not be checked against the master key:"
        in result.output
    )
    assert 'cannot connect to invalid database "half_dropped"' in result.output
