"""More edges of the CLI's tooling: passwords in DATABASE_URL that `db url` must never show, and an
embedded cluster whose socket directory was deleted."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import psycopg
import pytest
from click.testing import CliRunner

from spreadedge.cli import main
from spreadedge.cluster import Cluster, ClusterError


def _db_url(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--database-url", url, "db", "url"], catch_exceptions=False)
    return result.exit_code, result.output


def test_db_url_hides_a_password_holding_a_question_mark_and_a_hash():
    # libpq reads the user information up to the first "@" before any "/", so it connects with
    # the password "pa?ss#word"; the redaction stopped at "?" and printed the URL whole
    assert _db_url("postgresql://trader:pa?ss#word@db.internal:5432/spreadedge") == (
        0,
        "postgresql://trader:***@db.internal:5432/spreadedge\n",
    )


def test_db_url_hides_a_password_holding_an_unencoded_slash():
    # a base64 password pasted without percent-encoding: libpq reads no password in it (the URL
    # does not connect), and db url printed it whole
    assert _db_url("postgresql://trader:c2VjcmV0/cGFzcw@db.internal:5432/spreadedge") == (
        0,
        "postgresql://trader:***@db.internal:5432/spreadedge\n",
    )


def test_db_url_keeps_the_parameters_after_a_password_parameter():
    # the password parameter's value ends at "&": the redaction took the rest of the query with
    # it, so db url showed another URL than the one commands use
    assert _db_url("postgresql://db.internal/spreadedge?password=s3cret&port=5433&sslmode=require") == (
        0,
        "postgresql://db.internal/spreadedge?password=***&port=5433&sslmode=require\n",
    )


@pytest.mark.parametrize("private_parent", [False, True], ids=["in-home", "fallback"])
def test_db_start_creates_a_deleted_socket_directory_again(
    make_cluster: Callable[..., Cluster], private_parent: bool
):
    # a temporary-file cleaner (or a hand) deleted run/ while the cluster was stopped: every later
    # start failed with "could not create lock file ...: No such file or directory"
    cluster = make_cluster(private_parent=private_parent)
    cluster.start()
    cluster.stop()
    shutil.rmtree(cluster.socket_dir.resolve())

    started = cluster.start()

    with psycopg.connect(cluster.conninfo()) as conn:
        assert (started, conn.execute("select 1").fetchone()) == (True, (1,))
    cluster.stop()


def test_db_start_on_a_running_cluster_whose_socket_is_gone_says_to_restart_it(
    make_cluster: Callable[..., Cluster],
):
    # the server makes its socket only when it starts: "already running" left every command
    # failing to connect through a socket that no longer exists
    cluster = make_cluster()
    cluster.start()
    shutil.rmtree(cluster.socket_dir.resolve())

    with pytest.raises(ClusterError) as caught:
        cluster.start()
    cluster.stop()

    socket_file = cluster.socket_dir / f".s.PGSQL.{cluster.port}"
    assert str(caught.value) == (
        f"the embedded cluster is running but its socket {socket_file} is gone (its directory "
        "was deleted?), so nothing can connect to it; restart it with `spreadedge db stop` "
        "then `spreadedge db start`"
    )
