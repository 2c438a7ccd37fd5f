"""The operator's journey through the CLI: Ctrl-C in the middle of a command, and the other ways a
command run by hand (or from a shell script) meets a database that is not there or not ready."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from conftest import free_port
from ops_helpers import cli
from packaging_helpers import without_code_sql
from spreadedge.cli import main
from spreadedge.cluster import Cluster

PROJECT = Path(__file__).resolve().parent.parent
# the same key migrate takes (spreadedge.migrate._MIGRATE_LOCK): holding it keeps a migrate waiting
MIGRATE_LOCK = "select pg_advisory_lock(hashtext('spreadedge.migrate'))"
INTERRUPTED = "interrupted: any transaction in progress was rolled back; what was committed before stays"


def _cli_env(url: str) -> dict[str, str]:
    return {**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": url}


def _wait_for_migrate_to_block(conn: psycopg.Connection, process: subprocess.Popen[bytes]) -> None:
    """Wait until the migrate of ``process`` waits on the lock ``conn`` holds."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        row = conn.execute(
            "select count(*) from pg_stat_activity"
            " where wait_event = 'advisory' and pid <> pg_backend_pid() and datname = current_database()"
        ).fetchone()
        if row == (1,):
            return
        time.sleep(0.05)
    raise AssertionError(f"migrate never waited on the lock: {process.communicate()}")


def test_ctrl_c_during_a_command_says_it_was_interrupted_and_ends_it_by_sigint(db_url: str):
    # why it matters: click turned Ctrl-C into "Aborted!" and status 1, a normal exit
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute(MIGRATE_LOCK)
        process = subprocess.Popen(
            [sys.executable, "-c", "from spreadedge.cli import main; main()", "migrate"],
            env=_cli_env(db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for_migrate_to_block(holder, process)
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    assert process.returncode == -signal.SIGINT
    assert err.decode() == f"\n{INTERRUPTED}\n"


def test_ctrl_c_during_a_command_in_a_shell_loop_stops_the_loop(db_url: str):
    # why it matters: bash takes a command that exits normally after Ctrl-C as one that handled
    # it, so `for f in *.csv; do spreadedge ingest ticks "$f"; done` went on with the next file
    # after each Ctrl-C; "next" was printed here and the loop's second migrate started
    cli = f"{sys.executable} -c 'from spreadedge.cli import main; main()'"
    script = f"for i in 1 2; do {cli} migrate; echo next; done"
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute(MIGRATE_LOCK)
        process = subprocess.Popen(
            ["bash", "-c", script],
            env=_cli_env(db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for_migrate_to_block(holder, process)
            os.killpg(process.pid, signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()

    assert (process.returncode, out.decode()) == (-signal.SIGINT, "")
    assert INTERRUPTED in err.decode()


def test_tune_apply_with_a_superscript_digit_is_an_unknown_index_name_not_a_traceback(db_url: str):
    # "²".isdigit() is true, so it was taken for a number of tune report and int() raised ValueError
    result = cli("tune", "apply", "²", database_url=db_url)

    assert (result.exit_code, result.output) == (
        1,
        "Error: no advice builds an index named '²' now (tune report lists none)\n",
    )


@pytest.mark.parametrize("advice", ["\u0661", "\uff11"], ids=["arabic-indic-one", "fullwidth-one"])
def test_tune_apply_takes_only_ascii_digits_as_a_number_of_tune_report(db_url: str, advice: str):
    # int() reads these as 1: tune apply built advice 1 although no index has that name
    result = cli("tune", "apply", advice, database_url=db_url)

    assert (result.exit_code, result.output) == (
        1,
        f"Error: no advice builds an index named {advice!r} now (tune report lists none)\n",
    )


@pytest.mark.parametrize("command", [["pnl"], ["users", "list"], ["db", "start"]], ids=" ".join)
def test_a_command_without_any_sql_creates_no_embedded_cluster(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
):
    # why it matters: without migrations/ the command created and started a cluster in its
    # .spreadedge/, then said "run spreadedge migrate", which refuses there: a dead end, a server left
    # running. Outside the project the code's own SQL is used (test_installed_package_hunt.py), so
    # only a spreadedge that carries none is left to refuse.
    migrations = without_code_sql(monkeypatch, tmp_path / "code")
    home, port = tmp_path / ".spreadedge", free_port()
    env = {"SPREADEDGE_PROJECT_DIR": str(tmp_path), "SPREADEDGE_HOME": str(home),
           "SPREADEDGE_PORT": str(port), "DATABASE_URL": None}  # fmt: skip
    try:
        result = CliRunner().invoke(main, command, env=env)
    finally:
        Cluster(home, port).destroy()  # what the old code left running

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output == (
        f"Error: {migrations} is not a directory, so no embedded cluster is created in "
        f"{home}: run spreadedge from the project directory (the one with migrations/ and functions/), "
        "set SPREADEDGE_PROJECT_DIR, or give --database-url (DATABASE_URL)\n"
    )


def test_an_existing_embedded_cluster_is_used_from_outside_the_project(tmp_path: Path, pg_cluster: Cluster):
    # a cron entry or a script elsewhere that names the cluster's home still reaches it
    env = {"SPREADEDGE_PROJECT_DIR": str(tmp_path), "SPREADEDGE_HOME": str(pg_cluster.home),
           "SPREADEDGE_PORT": str(pg_cluster.port), "DATABASE_URL": None}  # fmt: skip

    result = CliRunner().invoke(main, ["db", "start"], env=env)

    assert (result.exit_code, result.output) == (
        0,
        f"embedded cluster already running on port {pg_cluster.port} ({pg_cluster.data_dir.resolve()})\n",
    )


def test_restore_logical_into_an_empty_database_name_is_a_usage_error(db_url: str, tmp_path: Path):
    # "create database" of "" is a syntax error (42601): a traceback
    dump = tmp_path / "spreadedge-full.dump"
    dump.write_bytes(b"")

    result = cli("restore", "logical", str(dump), "--to-database", "", database_url=db_url)

    assert result.exit_code == 2
    assert result.output.endswith("Error: Invalid value for '--to-database': '' is not a database name\n")


def test_restore_logical_of_a_file_that_is_no_dump_creates_no_database(db_url: str, tmp_path: Path):
    # the database was created, the file refused, the database dropped again ("created database",
    # "dropped database" in the output), for a file the name alone shows is no dump
    quotes = tmp_path / "quotes.csv"
    quotes.write_text("exchange,symbol\n")

    result = cli("restore", "logical", str(quotes), "--to-database", "restored_here", database_url=db_url)

    assert (result.exit_code, result.output) == (
        1,
        f"Error: {quotes} is not a spreadedge dump: its name must end in .dump, .dump.bz2, .dump.lz4, "
        ".dump.zst\n",
    )


@pytest.mark.parametrize("value", ["nan", "NaN", "-nan"])
def test_serve_refuses_a_statement_timeout_that_is_not_a_number(value: str, busy_port: int):
    # FloatRange lets NaN through: the API served, but its pool never connected (each connection's
    # statement_timeout raised "cannot convert float NaN to integer") and every request waited
    env = {"SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}

    # the busy port: without the check, serve fails there rather than serving forever
    result = CliRunner().invoke(
        main, ["serve", "--port", str(busy_port), "--statement-timeout", value], env=env
    )

    assert result.exit_code == 2
    assert result.output.endswith(
        "Error: Invalid value for '--statement-timeout': nan is not a finite number of seconds\n"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("host=db.example password=se\\ cret user=trader", "host=db.example password=*** user=trader"),
        ("host=db.example password=a\\ b\\ c", "host=db.example password=***"),
    ],
    ids=["one-escaped-space", "two-escaped-spaces"],
)
def test_db_url_hides_the_whole_of_a_key_value_password_with_an_escaped_space(url: str, shown: str):
    # libpq reads password=se\ cret as "se cret"; `db url` printed "password=*** cret"
    result = CliRunner().invoke(main, ["--database-url", url, "db", "url"])

    assert (result.exit_code, result.output) == (0, f"{shown}\n")


def test_a_non_ascii_argument_under_an_ascii_locale_is_a_message_not_a_traceback(db_url: str):
    # Python reads the argument's UTF-8 bytes as lone surrogates under this locale, and psycopg
    # raised UnicodeEncodeError ("surrogates not allowed") sending them: a traceback
    ascii_locale = {**_cli_env(db_url), "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}

    done = subprocess.run(
        [sys.executable, "-c", "from spreadedge.cli import main; main()", "pnl", "--strategy", "стратегия"],
        env=ascii_locale, capture_output=True, check=False,
    )  # fmt: skip

    assert (done.returncode, done.stdout, done.stderr.decode()) == (
        1,
        b"",
        "Error: an argument or environment variable holds bytes that are not text in this locale's "
        "encoding (ascii): run spreadedge under a UTF-8 locale (e.g. LC_ALL=C.UTF-8)\n",
    )
