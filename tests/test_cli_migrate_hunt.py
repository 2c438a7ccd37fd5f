"""What the migrate runner, the settings and the CLI's tables do at their edges: migrate's own
connections under the server's session timeouts, and values that would drive the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from auth_helpers import make_user, store_key
from spreadedge import migrate, textable
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings


@pytest.fixture
def database(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database for one test; its URL."""
    name = f"test_hunt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def tiny_project(root: Path, migrations: dict[str, str]) -> Settings:
    """A project directory with the given migrations and an empty functions/."""
    (root / "migrations").mkdir(parents=True)
    (root / "functions").mkdir()
    for name, text in migrations.items():
        (root / "migrations" / name).write_text(text)
    return Settings(project_dir=root)


def query(url: str, text: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text.encode()).fetchall()


# -- migrate under the database's idle_session_timeout ---------------------------------------------


def test_migrate_finishes_when_a_migration_outlasts_the_databases_idle_session_timeout(
    tmp_path: Path, database: str
):
    # migrate's ledger connection (which holds the migrate lock) and yoyo's own connection sit idle
    # while a migration runs on a third one; a server-side idle_session_timeout shorter than a
    # migration ended them, so migrate failed after the migration committed
    settings = tiny_project(
        tmp_path / "project",
        {
            "0001_slow.sql.j2": "create table slow (id bigint);\nselect pg_sleep(1.5);\n",
            "0002_after.sql.j2": "create table after_slow (id bigint);\n",
        },
    )
    with psycopg.connect(database, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(
            sql.SQL("alter database {} set idle_session_timeout = '500ms'").format(sql.Identifier(dbname))
        )
    lines: list[str] = []

    migrate.migrate(database, settings, lines.append)

    assert lines == ["applying 0001_slow", "applying 0002_after", "re-applied 0 function files"]
    assert query(database, "select migration_id from public._spreadedge_migration_checksum order by 1") == [
        ("0001_slow",),
        ("0002_after",),
    ]
    assert query(database, "select count(*) from public._yoyo_migration") == [(2,)]


def test_a_migration_committed_before_yoyo_could_mark_it_is_reported_applied_not_rolled_back(
    tmp_path: Path, database: str
):
    # the migration ends yoyo's own connection (application_name is migrate's ledger's, left alone)
    # as a lost connection or a server restart would, between its commit and yoyo's mark
    settings = tiny_project(
        tmp_path / "project",
        {
            "0001_cut.sql.j2": (
                "create table cut (id bigint);\n"
                "select pg_terminate_backend(pid) from pg_stat_activity\n"
                " where datname = current_database() and pid <> pg_backend_pid()\n"
                "   and application_name <> 'spreadedge migrate';\n"
            ),
            "0002_next.sql.j2": "create table next_one (id bigint);\n",
        },
    )
    lines: list[str] = []

    with pytest.raises(migrate.MigrationError) as stopped:
        migrate.migrate(database, settings, lines.append)
    again: list[str] = []
    migrate.migrate(database, settings, again.append)

    assert str(stopped.value).startswith(
        "migration 0001_cut was applied, but migrate stopped before the next one: yoyo could not record it: "
    )
    assert str(stopped.value).endswith("; run spreadedge migrate again to go on")
    assert lines == ["applying 0001_cut"]
    assert again == ["applying 0002_next", "re-applied 0 function files"]
    assert query(database, "select count(*) from public._yoyo_migration") == [(2,)]


# -- tables: control characters in a value ---------------------------------------------------------


def test_keys_list_writes_a_labels_escape_sequence_and_line_break_as_escapes(db_url: str, auth_db):
    # a trader names their key; an administrator lists every key: the label must not drive the
    # administrator's terminal (ESC [2J clears the screen) nor split its row into two
    user_id = make_user(auth_db, "alice", "trader")
    store_key(auth_db, user_id, label="main\x1b[2J\nfake row")

    result = CliRunner().invoke(main, ["--database-url", db_url, "keys", "list"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert "\x1b" not in result.output
    assert lines[2].split()[3] == "main\\x1b[2J\\nfake"


def test_a_table_aligns_a_cell_by_its_escaped_width():
    table = textable.render(["name", "n"], [["a\tb", "1"], ["abcdef", "22"]], [False, True])

    assert table.splitlines() == [
        "name     n",
        "------  --",
        "a\\tb     1",
        "abcdef  22",
    ]


# -- project files: UTF-8 whatever the locale --------------------------------------------------------


def migrate_cli(project: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["migrate", *args], env={"SPREADEDGE_PROJECT_DIR": str(project), "DATABASE_URL": None}
    )


def test_a_migration_that_is_not_utf8_is_refused_naming_the_file_and_line(tmp_path: Path):
    settings = tiny_project(tmp_path / "project", {"0001_a.sql.j2": "create table a (id bigint);\n"})
    (settings.migrations_dir / "0002_b.sql.j2").write_bytes(
        b"-- Latin-1\ncreate table b (n text default 'caf\xe9');\n"
    )

    result = migrate_cli(settings.project_dir, "--render-only", str(tmp_path / "rendered"))

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert (
        result.output
        == "Error: migrations/0002_b.sql.j2 line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"
    )


def test_a_functions_file_that_is_not_utf8_is_refused_before_any_database_is_touched(tmp_path: Path):
    settings = tiny_project(tmp_path / "project", {"0001_a.sql.j2": "create table a (id bigint);\n"})
    (settings.functions_dir / "f.sql").write_bytes(
        b"create or replace function f() returns text language sql as $$select 'caf\xe9'$$;\n"
    )

    # never connected to: functions/ is checked first
    result = CliRunner().invoke(
        main,
        ["--database-url", "postgresql://nobody@127.0.0.1:1/nothing", "migrate"],
        env={"SPREADEDGE_PROJECT_DIR": str(settings.project_dir)},
    )

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert (
        result.output == "Error: functions/f.sql line 1: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"
    )


ASCII_LOCALE = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def test_render_only_writes_utf8_under_an_ascii_locale(tmp_path: Path):
    settings = tiny_project(
        tmp_path / "project", {"0001_a.sql.j2": "comment on schema public is 'prices (…)';\n"}
    )
    rendered = tmp_path / "rendered"
    program = "from spreadedge.cli import main; main()"
    env = {**ASCII_LOCALE, "SPREADEDGE_PROJECT_DIR": str(settings.project_dir)}
    env.pop("DATABASE_URL", None)

    done = subprocess.run(
        [sys.executable, "-c", program, "migrate", "--render-only", str(rendered)],
        env=env, capture_output=True, check=False,
    )  # fmt: skip

    assert (done.returncode, done.stderr) == (0, b"")
    assert (rendered / "0001_a.sql").read_bytes() == "comment on schema public is 'prices (…)';\n".encode()


def test_functions_are_read_as_utf8_under_an_ascii_locale(tmp_path: Path):
    functions = tmp_path / "functions"
    functions.mkdir()
    text = "create or replace function f() returns text language sql as $$select 'a…'$$;\n"
    (functions / "f.sql").write_text(text, encoding="utf-8")
    program = (
        "import sys; from pathlib import Path; from spreadedge.sqlfiles import function_text;"
        "sys.stdout.buffer.write(function_text(Path(sys.argv[1]), Path(sys.argv[1], 'f.sql')).encode())"
    )

    done = subprocess.run(
        [sys.executable, "-c", program, str(functions)], env=ASCII_LOCALE, capture_output=True, check=False
    )

    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode() == text
