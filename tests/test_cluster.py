"""The embedded cluster: idempotent start, stale state, port clashes, root handling, CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from conftest import free_port
from spreadedge.cli import main
from spreadedge.cluster import FALLBACK_ROOT, Cluster, ClusterError

as_root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the fallback is for root only")


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def cli_env(cluster: Cluster) -> dict[str, str | None]:
    return {"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port), "DATABASE_URL": None}


def test_start_twice_is_a_no_op(pg_cluster: Cluster):
    pid = pg_cluster.status().pid

    assert pg_cluster.start() is False
    assert pg_cluster.status().pid == pid


@pytest.mark.parametrize("stale_pid", [dead_pid, os.getpid], ids=["dead-pid", "live-non-postgres-pid"])
def test_start_replaces_a_stale_pid_file(pg_cluster: Cluster, stale_pid: Callable[[], int]):
    pg_cluster.stop()
    pid_file = pg_cluster.data_dir / "postmaster.pid"
    pid_file.write_text(
        f"{stale_pid()}\n{pg_cluster.data_dir}\n{int(time.time())}\n{pg_cluster.port}\n"
        f"{pg_cluster.socket_dir}\n127.0.0.1\n  5432001     32768\nready   \n"
    )

    assert pg_cluster.start() is True
    assert pg_cluster.status().running


def test_port_in_use_is_refused_naming_the_port(make_cluster: Callable[..., Cluster], busy_port: int):
    cluster = make_cluster(port=busy_port)

    with pytest.raises(ClusterError, match=rf"port {busy_port} .*SPREADEDGE_PORT"):
        cluster.start()
    assert not cluster.status().running


def test_status_reports_running_then_stopped(pg_cluster: Cluster):
    running = pg_cluster.status()
    pg_cluster.stop()
    stopped = pg_cluster.status()
    pg_cluster.start()

    assert (running.running, running.initialized, running.port) == (True, True, pg_cluster.port)
    assert running.pid is not None
    assert (stopped.running, stopped.initialized, stopped.pid) == (False, True, None)


def test_server_processes_lists_the_postmaster_while_running_and_nothing_once_stopped(pg_cluster: Cluster):
    postmaster = pg_cluster.status().pid
    running = pg_cluster.server_processes()
    pg_cluster.stop()
    stopped = pg_cluster.server_processes()
    pg_cluster.start()

    assert postmaster in running
    assert stopped == []


def test_url_connects_in_utc_with_pg_cron_and_pg_stat_statements_preloaded(pg_cluster: Cluster):
    with psycopg.connect(pg_cluster.url()) as conn:
        timezone = conn.execute("show timezone").fetchone()
        preloaded = conn.execute("show shared_preload_libraries").fetchone()
        database = conn.execute("select current_user, current_database()").fetchone()

    assert timezone == ("UTC",)
    assert preloaded is not None
    assert {"pg_cron", "pg_stat_statements"} <= set(preloaded[0].split(","))
    assert database == ("spreadedge", "spreadedge")


def test_tcp_needs_the_generated_password(pg_cluster: Cluster):
    password = (pg_cluster.home / "password").read_text().strip()
    tcp = {"host": "127.0.0.1", "port": pg_cluster.port, "user": "spreadedge", "dbname": "spreadedge"}

    with psycopg.connect(**tcp, password=password) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**tcp, password="not-" + password)
    assert (pg_cluster.home / "password").stat().st_mode & 0o777 == 0o600


def test_server_does_not_run_as_root(pg_cluster: Cluster):
    pid = pg_cluster.status().pid

    assert Path(f"/proc/{pid}").stat().st_uid != 0


@as_root_only
def test_home_the_server_user_cannot_reach_lives_in_var_lib(make_cluster: Callable[..., Cluster]):
    cluster = make_cluster(private_parent=True)

    cluster.start()

    assert cluster.data_dir.is_symlink()
    assert cluster.data_dir.resolve().is_relative_to(FALLBACK_ROOT)
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("select current_database()").fetchone() == ("spreadedge",)


@pytest.mark.parametrize(
    "private_parent",
    [False, pytest.param(True, marks=as_root_only)],
    ids=["reachable-home", "home-in-var-lib"],
)
def test_destroy_removes_the_cluster(make_cluster: Callable[..., Cluster], private_parent: bool):
    cluster = make_cluster(private_parent=private_parent)
    cluster.start()
    real_data_dir = cluster.data_dir.resolve()

    cluster.destroy()

    assert not cluster.status().running
    assert not real_data_dir.exists()
    assert not cluster.home.exists()


def test_cli_db_status_shows_the_running_cluster(pg_cluster: Cluster):
    result = CliRunner().invoke(main, ["db", "status"], env=cli_env(pg_cluster))

    assert result.exit_code == 0, result.output
    assert f"running (pid {pg_cluster.status().pid})" in result.output
    assert str(pg_cluster.port) in result.output


def test_cli_db_url_prints_the_socket_url(pg_cluster: Cluster):
    result = CliRunner().invoke(main, ["db", "url"], env=cli_env(pg_cluster))

    assert result.exit_code == 0, result.output
    assert result.output.strip() == pg_cluster.url()


def test_cli_db_url_refuses_a_port_other_than_the_running_clusters(pg_cluster: Cluster):
    other = free_port()
    env = {**cli_env(pg_cluster), "SPREADEDGE_PORT": str(other)}

    result = CliRunner().invoke(main, ["db", "url"], env=env)

    assert (result.exit_code, result.output) == (
        1,
        f"Error: the embedded cluster is running on port {pg_cluster.port}, not {other}; "
        "stop it with `spreadedge db stop` to change SPREADEDGE_PORT\n",
    )


def test_cli_reports_a_cluster_error_without_traceback(make_cluster: Callable[..., Cluster], busy_port: int):
    cluster = make_cluster(port=busy_port)

    result = CliRunner().invoke(main, ["db", "start"], env=cli_env(cluster))

    assert result.exit_code == 1
    assert f"Error: port {busy_port}" in result.output
    assert "Traceback" not in result.output


def test_destroy_refuses_a_home_whose_run_and_cluster_are_not_an_embedded_clusters(tmp_path: Path):
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    (home / "run" / "keep.txt").write_text("not the server's")
    (home / "cluster").mkdir()
    (home / "cluster" / "mine.txt").write_text("not a data directory")

    with pytest.raises(ClusterError) as caught:
        Cluster(home, 1).destroy()

    assert str(caught.value) == (
        f"{home} does not look like the home of an embedded cluster, so nothing was deleted: "
        f"{home / 'cluster'} is not a PostgreSQL data directory; "
        f"{home / 'run'} holds files that are not the server's: keep.txt (check SPREADEDGE_HOME)"
    )
    assert (home / "run" / "keep.txt").exists() and (home / "cluster" / "mine.txt").exists()
    assert not (home / "cluster.lock").exists()


def test_destroy_of_a_home_without_a_cluster_deletes_nothing(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "password").write_text("someone else's\n")

    assert Cluster(home, 1).destroy() is False
    assert (home / "password").read_text() == "someone else's\n"


def test_cli_db_destroy_says_when_there_is_no_cluster(tmp_path: Path):
    env = {"SPREADEDGE_HOME": str(tmp_path / "home"), "SPREADEDGE_PORT": "55999", "DATABASE_URL": None}

    result = CliRunner().invoke(main, ["db", "destroy", "--yes"], env=env)

    assert result.exit_code == 0, result.output
    assert result.output == f"no embedded cluster in {tmp_path / 'home'}: nothing to destroy\n"


def test_cli_db_stop_without_a_cluster_creates_nothing(tmp_path: Path):
    env = {"SPREADEDGE_HOME": str(tmp_path / "home"), "SPREADEDGE_PORT": "55999", "DATABASE_URL": None}

    result = CliRunner().invoke(main, ["db", "stop"], env=env)

    assert (result.exit_code, result.output) == (0, "embedded cluster was not running\n")
    assert not (tmp_path / "home").exists()


def test_start_restores_the_include_of_an_init_cut_short_after_initdb(make_cluster: Callable[..., Cluster]):
    cluster = make_cluster()
    cluster.init()
    conf = cluster.data_dir / "postgresql.conf"
    # the state initdb leaves, but with our port and socket: without the include, the server would
    # otherwise start on PostgreSQL's default port 5432, which a test must never touch
    kept = conf.read_text().split("\n# The embedded cluster's settings")[0]
    conf.write_text(f"{kept}\nport = {cluster.port}\nunix_socket_directories = '{cluster.socket_dir}'\n")
    (cluster.data_dir / "spreadedge.conf").unlink()

    cluster.start()

    with psycopg.connect(cluster.url()) as conn:
        preloaded = conn.execute("show shared_preload_libraries").fetchone()
        timezone = conn.execute("show timezone").fetchone()
    assert preloaded == ("pg_stat_statements,pg_cron",)
    assert timezone == ("UTC",)
    assert conf.read_text().splitlines().count("include 'spreadedge.conf'") == 1


@as_root_only
def test_home_whose_path_postgresql_cannot_take_lives_in_var_lib():
    parent = Path(tempfile.mkdtemp(prefix="spreadedge-test-"))
    parent.chmod(0o755)
    odd = parent / 'a $HOME, "quoted" \\ dir'
    odd.mkdir()
    odd.chmod(0o755)
    cluster = Cluster(odd / "home", free_port())
    try:
        assert cluster.start() is True

        assert cluster.data_dir.resolve().is_relative_to(FALLBACK_ROOT)
        with psycopg.connect(cluster.url()) as conn:
            assert conn.execute("select current_database()").fetchone() == ("spreadedge",)
    finally:
        cluster.destroy()
        shutil.rmtree(parent, ignore_errors=True)


def test_cli_db_start_with_a_home_that_is_a_file_is_a_clean_error(tmp_path: Path):
    home = tmp_path / "home"
    home.write_text("")
    env = {"SPREADEDGE_HOME": str(home), "SPREADEDGE_PORT": str(free_port()), "DATABASE_URL": None}

    result = CliRunner().invoke(main, ["db", "start"], env=env)

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output == (
        f"Error: cannot use {home} as the embedded cluster's home: File exists ({home}); "
        "choose another directory with SPREADEDGE_HOME=<dir>\n"
    )
