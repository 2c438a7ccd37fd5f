"""The upgrade path at its edges: what ``spreadedge migrate --status`` says of a migration that
migrate would refuse, and functions/ entries that end in .sql but are no readable file."""

from __future__ import annotations

from pathlib import Path

import pytest

import test_migrate
from spreadedge import migrate
from spreadedge.sqlfiles import MigrationError, check_functions
from test_migrate import CREATE_ACCOUNTS, Project, query, run_migrate

# test_migrate's fixtures: a tiny project of its own and a fresh, empty database
project = test_migrate.project
database = test_migrate.database

# -- --status and a migration migrate refuses ------------------------------------------------------


def test_status_says_a_pending_migration_sorting_before_an_applied_one_is_refused(
    project: Project, database: str
):
    # migrate refuses such a migration (migrations only append); status listed it as plain
    # "pending", as if the next migrate would apply it
    project.write("migrations/0002_balance.sql.j2", "create table balance (id bigint);\n")
    project.write("migrations/0003_owner.sql.j2", "create table owner (id bigint);\n")
    run_migrate(database, project)
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0004_note.sql.j2", "create table note (id bigint);\n")
    lines: list[str] = []

    migrate.run(project.settings, database, status=True, echo=lines.append)

    when = dict(
        query(
            database,
            "select migration_id, to_char(applied_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
            "from public._spreadedge_migration_checksum",
        )
    )
    assert lines == [
        "0001_accounts  pending  REFUSED: sorts before 0003_owner, which is applied (rename it to sort after)",
        f"0002_balance   applied {when['0002_balance']} UTC  checksum ok",
        f"0003_owner     applied {when['0003_owner']} UTC  checksum ok",
        "0004_note      pending",
        "2 applied, 2 pending",
    ]


# -- functions/ names that are no readable file ----------------------------------------------------


def test_an_editors_lock_file_in_functions_is_refused_naming_it_not_a_traceback(tmp_path: Path):
    # emacs keeps a lock file .#NAME, a symbolic link to nowhere, beside a file being edited
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "30_orders.sql").write_text("create or replace view v as select 1;\n")
    (functions / ".#30_orders.sql").symlink_to("root@host.4242:1700000000")

    with pytest.raises(MigrationError) as refused:
        check_functions(functions)

    assert str(refused.value) == (
        "functions/.#30_orders.sql cannot be read: No such file or directory; functions/ may only "
        "hold SQL files (remove it, or rename it so that it does not end in .sql)"
    )


def test_a_directory_named_like_sql_in_functions_is_refused_naming_it_not_a_traceback(tmp_path: Path):
    functions = tmp_path / "functions"
    (functions / "old.sql").mkdir(parents=True)
    (functions / "30_orders.sql").write_text("create or replace view v as select 1;\n")

    with pytest.raises(MigrationError) as refused:
        check_functions(functions)

    assert str(refused.value) == (
        "functions/old.sql cannot be read: Is a directory; functions/ may only "
        "hold SQL files (remove it, or rename it so that it does not end in .sql)"
    )


def test_migrate_with_an_unreadable_functions_entry_applies_nothing(project: Project, database: str):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    (project.root / "functions" / ".#10_view.sql").symlink_to("nowhere")

    with pytest.raises(MigrationError, match=r"^functions/\.#10_view\.sql cannot be read: No such file"):
        run_migrate(database, project)

    assert query(database, "select to_regclass('public.accounts') is null") == [(True,)]
