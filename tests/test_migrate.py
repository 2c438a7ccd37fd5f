"""spreadedge migrate: rendering, applying, frozen migrations, functions/ and status.

Each test builds its own tiny project (migrations/ and functions/ in a tmp dir) and migrates a
fresh database of the session's cluster, so the project's real migrations play no part here.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo

from packaging_helpers import without_code_sql
from spreadedge import migrate
from spreadedge.cli import main
from spreadedge.migrate import MigrationError, Problem
from spreadedge.settings import RenderSettings, Settings
from spreadedge.sqlfiles import FUNCTIONS_HINT

CREATE_ACCOUNTS = "create table accounts (id bigint primary key);\n"
ADD_BALANCE = "alter table accounts add column balance numeric not null default {{ partition_premake }};\n"
DOLLAR_QUOTED = """\
-- A DO block and function bodies with semicolons inside their dollar quotes.
create table flags (name text primary key, note text);
do $$
begin
    if not exists (select 1 from flags where name = 'seeded') then
        insert into flags values ('seeded', 'a; b');
    end if;
    raise notice 'seeded % flag(s), 100%% sure', (select count(*) from flags);
end;
$$;
create function flag_note(p_name text) returns text language plpgsql as $fn$
declare
    v_note text;
begin
    select note into v_note from flags where name = p_name;  -- a comment; with a semicolon
    return $q$[$q$ || v_note || $q$]$q$;
end
$fn$;
select flag_note('seeded');
"""


class Project:
    """A project directory with its own migrations/ and functions/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "migrations").mkdir(parents=True)
        (root / "functions").mkdir()
        self.render = RenderSettings()

    @property
    def settings(self) -> Settings:
        return Settings(project_dir=self.root, render=self.render)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


@pytest.fixture
def database(pg_cluster) -> Iterator[str]:
    """A fresh, empty database for one test; its URL."""
    pg_cluster.ensure_database("spreadedge")
    name = f"test_migrate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.url("spreadedge"), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url("spreadedge"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def query(url: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text.encode(), params or None).fetchall()


def checksums(url: str) -> list[tuple[str, str]]:
    return query(url, "select migration_id, sha256 from public._spreadedge_migration_checksum order by 1")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def table_exists(url: str, name: str) -> bool:
    return query(url, "select to_regclass(%s) is not null", (name,))[0][0]


def run_migrate(url: str, project: Project) -> list[str]:
    lines: list[str] = []
    migrate.migrate(url, project.settings, lines.append)
    return lines


def test_render_fills_in_settings_values(project):
    project.write(
        "migrations/0001_premake.sql.j2", "select {{ partition_premake }}, '{{ retention_trades }}';\n"
    )
    project.write("migrations/0002_plain.sql", "select 'plain';")
    project.render = RenderSettings(partition_premake=7, retention_trades="30 days")

    rendered = migrate.render_sql_dir(project.settings.migrations_dir, project.render.as_context())

    assert rendered == [("0001_premake.sql", "select 7, '30 days';\n"), ("0002_plain.sql", "select 'plain';")]


def test_render_quotes_settings_with_the_literal_and_ident_filters(project):
    project.write(
        "migrations/0001_retention.sql.j2",
        "select {{ retention_trades | literal }}, {{ retention_audit | literal }}, "
        "{{ 'trading' | ident('trades') }};\n",
    )
    project.render = RenderSettings(retention_trades="it's 30 days")

    rendered = migrate.render_sql_dir(project.settings.migrations_dir, project.render.as_context())

    assert rendered == [("0001_retention.sql", "select 'it''s 30 days', NULL, \"trading\".\"trades\";\n")]


@pytest.mark.parametrize(
    "expression",
    ["partition_premade", "partition_premade | literal", "'trading' | ident(partition_premade)"],
    ids=["plain", "literal", "ident"],
)
def test_render_refuses_an_undefined_variable(project, expression):
    project.write("migrations/0001_typo.sql.j2", f"select {{{{ {expression} }}}};\n")

    with pytest.raises(MigrationError) as refused:
        migrate.render_sql_dir(project.settings.migrations_dir, project.render.as_context())

    assert str(refused.value) == (
        "migrations/0001_typo.sql.j2: 'partition_premade' is undefined (no such [render] setting)"
    )


@pytest.mark.parametrize("name", ["0002_balance.j2", "0002_balance.sql.jinja"])
def test_a_migration_file_without_the_sql_suffix_is_refused_not_skipped(project, name):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write(f"migrations/{name}", ADD_BALANCE)

    with pytest.raises(MigrationError) as refused:
        migrate.render_migrations(project.settings)

    assert str(refused.value) == (
        f"migrations/{name} is not read: a migration is a file named NNNN_description.sql.j2 (or .sql); "
        "rename it, or move it out of migrations/"
    )


def test_render_only_writes_files_and_touches_no_database(project, tmp_path):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)
    out = tmp_path / "rendered"
    lines: list[str] = []
    # A server that does not exist: any connection attempt would fail the test.
    nowhere = "postgresql://nobody@/nowhere?host=/nonexistent&port=1"

    migrate.run(project.settings, nowhere, render_only=out, echo=lines.append)

    assert sorted(path.name for path in out.iterdir()) == ["0001_accounts.sql", "0002_balance.sql"]
    assert (out / "0001_accounts.sql").read_text() == CREATE_ACCOUNTS
    assert (out / "0002_balance.sql").read_text() == (
        "alter table accounts add column balance numeric not null default 4;\n"
    )
    assert lines == [f"rendered 2 migrations into {out}"]


def test_render_only_refuses_a_directory_holding_other_files_and_writes_nothing(project, tmp_path):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    out = tmp_path / "rendered"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    with pytest.raises(MigrationError) as refused:
        migrate.run(project.settings, "", render_only=out, echo=lambda line: None)

    assert str(refused.value) == (
        f"{out} holds files that are not migrations rendered now: notes.txt; "
        "render into a new or empty directory (nothing was written)"
    )
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt"]


def test_render_only_refuses_a_directory_with_a_migration_that_no_longer_exists(project, tmp_path):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    out = tmp_path / "rendered"
    out.mkdir()
    (out / "0002_gone.sql").write_text("select 1;\n")

    with pytest.raises(MigrationError) as refused:
        migrate.run(project.settings, "", render_only=out, echo=lambda line: None)

    assert str(refused.value).startswith(
        f"{out} holds files that are not migrations rendered now: 0002_gone.sql;"
    )


def test_render_only_overwrites_an_earlier_render_of_the_same_migrations(project, tmp_path):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    out = tmp_path / "rendered"
    out.mkdir()
    (out / "0001_accounts.sql").write_text("stale\n")

    migrate.run(project.settings, "", render_only=out, echo=lambda line: None)

    assert (out / "0001_accounts.sql").read_text() == CREATE_ACCOUNTS


def test_render_only_into_a_path_that_cannot_be_a_directory_is_refused_without_traceback(project, tmp_path):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "rendered"

    with pytest.raises(MigrationError) as refused:
        migrate.run(project.settings, "", render_only=out, echo=lambda line: None)

    assert str(refused.value) == f"cannot write the rendered migrations into {out}: Not a directory ({out})"


def test_applies_in_filename_order_and_rerun_is_a_noop(project, database):
    # 0002 needs the table of 0001; written first so directory order is not file-name order.
    project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)

    first = run_migrate(database, project)
    second = run_migrate(database, project)

    assert first == ["applying 0001_accounts", "applying 0002_balance", "re-applied 0 function files"]
    assert second == ["up to date", "re-applied 0 function files"]
    assert query(
        database,
        "select column_name from information_schema.columns "
        "where table_name = 'accounts' order by ordinal_position",
    ) == [("id",), ("balance",)]
    assert checksums(database) == [
        ("0001_accounts", sha256(CREATE_ACCOUNTS)),
        ("0002_balance", sha256(ADD_BALANCE.replace("{{ partition_premake }}", "4"))),
    ]
    assert query(database, "select migration_id from _yoyo_migration order by applied_at_utc") == [
        ("0001_accounts",),
        ("0002_balance",),
    ]


def test_changed_template_of_applied_migration_is_refused_and_nothing_applied(project, database):
    template = project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    run_migrate(database, project)
    template.write_text("create table accounts (id bigint primary key, owner text);\n")
    project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    changed = sha256("create table accounts (id bigint primary key, owner text);\n")
    assert str(refused.value) == (
        f"migration 0001_accounts was applied but now renders differently (sha256 "
        f"{sha256(CREATE_ACCOUNTS)[:12]} applied, {changed[:12]} now): applied migrations are frozen, "
        "so the change belongs in a new migration; restore migrations/0001_accounts.sql.j2 and the "
        "[render] settings it uses"
    )
    assert checksums(database) == [("0001_accounts", sha256(CREATE_ACCOUNTS))]
    assert query(
        database, "select count(*) from information_schema.columns where table_name = 'accounts'"
    ) == [(1,)]


def test_changed_setting_that_alters_applied_migration_is_refused(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)
    run_migrate(database, project)
    project.render = RenderSettings(partition_premake=5)

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    applied = sha256(ADD_BALANCE.replace("{{ partition_premake }}", "4"))
    now = sha256(ADD_BALANCE.replace("{{ partition_premake }}", "5"))
    assert str(refused.value) == (
        f"migration 0002_balance was applied but now renders differently (sha256 {applied[:12]} "
        f"applied, {now[:12]} now): applied migrations are frozen, so the change belongs in a new "
        "migration; restore migrations/0002_balance.sql.j2 and the [render] settings it uses"
    )


def test_applied_migration_whose_file_disappeared_is_refused(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    gone = project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)
    run_migrate(database, project)
    gone.unlink()

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "migration 0002_balance was applied but migrations/0002_balance.sql.j2 is gone: applied "
        "migrations are frozen, restore the file (a change belongs in a new migration)"
    )


def test_failing_migration_leaves_nothing_half_applied(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0002_broken.sql.j2", "create table ledger (id bigint);\nselect 1 / 0;\n")
    project.write("migrations/0003_later.sql.j2", "create table later (id bigint);\n")
    lines: list[str] = []

    with pytest.raises(MigrationError) as refused:
        migrate.migrate(database, project.settings, lines.append)

    assert str(refused.value) == (
        "migration 0002_broken failed and was rolled back, nothing of it is applied: "
        "division by zero (SQLSTATE 22012)"
    )
    assert isinstance(refused.value.__cause__, psycopg.errors.DivisionByZero)
    assert lines == ["applying 0001_accounts", "applying 0002_broken"]
    assert checksums(database) == [("0001_accounts", sha256(CREATE_ACCOUNTS))]
    assert not table_exists(database, "ledger")
    assert not table_exists(database, "later")


def test_functions_with_create_table_is_refused_with_the_hint(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write(
        "functions/trading/balance.sql",
        "-- balances\ncreate or replace function balance() returns int language sql as 'select 1';\n"
        "\ncreate table balance_cache (\n    id bigint\n);\n",
    )

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "functions/ holds statements that cannot be re-applied:\n"
        "  functions/trading/balance.sql line 4: create table balance_cache (\n" + FUNCTIONS_HINT
    )
    # Checked before anything runs: not even the migration was applied.
    assert not table_exists(database, "accounts")


@pytest.mark.parametrize(
    "statement",
    [
        "create table t (id int);",
        "alter table t add column x int;",
        "insert into t values (1);",
        "create function f() returns int language sql as 'select 1';",
        "do $$ begin perform 1; end $$;",
        "create index on t (id);",
        "drop function f();",
    ],
)
def test_check_functions_refuses_what_cannot_run_twice(tmp_path, statement):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "f.sql").write_text(f"-- header\n\n{statement}\n")

    assert migrate.check_functions(functions) == [Problem("functions/f.sql", 3, statement)]


def test_check_functions_allows_reappliable_statements(tmp_path):
    functions = tmp_path / "functions"
    (functions / "a").mkdir(parents=True)
    (functions / "a" / "f.sql").write_text(
        "drop function if exists f(int);\n"
        "CREATE OR REPLACE FUNCTION f() returns int language plpgsql as $$ begin return 1; end $$;\n"
        "comment on function f() is 'one';\n"
        "create or replace procedure p() language sql begin atomic select 1; end;\n"
        "create or replace view v as select 1 as one;\n"
        "create or replace recursive view r (n) as select 1;\n"
        "drop view if exists old_v;\n"
        "drop trigger if exists t on x;\n"
        "create or replace trigger t before insert on x for each row execute function tf();\n"
    )

    assert migrate.check_functions(functions) == []


def test_functions_are_reapplied_on_every_migrate(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write(
        "functions/b/answer.sql",
        "create or replace function answer() returns int language sql as 'select 41';\n",
    )
    project.write(
        "functions/a/accounts.sql",
        "create or replace view account_ids as select id from accounts;\n"
        "comment on view account_ids is 'ids';\n",
    )
    first = run_migrate(database, project)
    project.write(
        "functions/b/answer.sql",
        "create or replace function answer() returns int language sql\n"
        "as $$ select format('%s', 42)::int $$;\n",
    )

    second = run_migrate(database, project)

    assert first[-1] == "re-applied 2 function files"
    assert second == ["up to date", "re-applied 2 function files"]
    assert query(database, "select answer()") == [(42,)]
    assert query(database, "select obj_description('account_ids'::regclass)") == [("ids",)]


def test_a_functions_template_is_rendered_then_applied_in_file_order(project, database):
    project.write(
        "functions/20_answers.sql.j2",
        "{% for n in [1, 2] %}"
        'create or replace function answer_{{ n }}() returns text language sql as $$ select {{ "a\'b" | literal }} || {{ n }} $$;\n'
        "{% endfor %}",
    )
    project.write(
        "functions/30_both.sql",
        "create or replace function both_answers() returns text language sql as $$ select answer_1() || answer_2() $$;\n",
    )
    project.write(
        "functions/10_first.sql",
        "create or replace function first() returns int language sql as 'select 1';\n",
    )

    assert run_migrate(database, project)[-1] == "re-applied 3 function files"
    assert query(database, "select both_answers()") == [("a'b1a'b2",)]


def test_a_functions_template_is_checked_as_rendered(tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "t.sql.j2").write_text(
        "{% for n in [1, 2] %}create or replace view v{{ n }} as select {{ n }} as n;\n{% endfor %}"
        "create table t{{ 3 }} (id int);\n"
    )

    assert migrate.check_functions(functions) == [
        Problem("functions/t.sql.j2", 3, "create table t3 (id int);")
    ]


def test_a_functions_file_and_its_template_together_are_refused(tmp_path):
    functions = tmp_path / "functions"
    (functions / "a").mkdir(parents=True)
    (functions / "a" / "f.sql").write_text("create or replace view v as select 1 as n;\n")
    (functions / "a" / "f.sql.j2").write_text("create or replace view v as select 2 as n;\n")

    with pytest.raises(MigrationError) as refused:
        migrate.check_functions(functions)

    assert str(refused.value) == "functions/a/f.sql and functions/a/f.sql.j2 both exist: keep one"


def test_a_functions_template_gets_no_settings(tmp_path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "t.sql.j2").write_text(
        "create or replace view v as select {{ retention_orders | literal }} as r;\n"
    )

    with pytest.raises(MigrationError) as refused:
        migrate.check_functions(functions)

    assert str(refused.value) == (
        "functions/t.sql.j2: 'retention_orders' is undefined (functions/ templates are rendered without settings)"
    )


def test_failing_function_file_rolls_back_all_of_functions(project, database):
    project.write(
        "functions/a.sql", "create or replace function one() returns int language sql as 'select 1';\n"
    )
    project.write(
        "functions/b.sql",
        "\ncreate or replace function two() returns int\nlanguage sql as 'select * from nothing_here';\n",
    )

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        'functions/b.sql line 3: relation "nothing_here" does not exist (SQLSTATE 42P01)'
    )
    assert query(database, "select count(*) from pg_proc where proname in ('one', 'two')") == [(0,)]


def test_status_lists_applied_and_pending(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0002_balance.sql.j2", ADD_BALANCE)
    run_migrate(database, project)
    project.render = RenderSettings(partition_premake=9)
    project.write("migrations/0003_owner.sql.j2", "alter table accounts add column owner text;\n")
    lines: list[str] = []

    migrate.run(project.settings, database, status=True, echo=lines.append)

    when = {
        name: stamp
        for name, stamp in query(
            database,
            "select migration_id, to_char(applied_at at time zone 'UTC', "
            "'YYYY-MM-DD HH24:MI:SS') from public._spreadedge_migration_checksum",
        )
    }
    assert lines == [
        f"0001_accounts  applied {when['0001_accounts']} UTC  checksum ok",
        f"0002_balance   applied {when['0002_balance']} UTC  checksum CHANGED",
        "0003_owner     pending",
        "2 applied, 1 pending",
    ]


def test_status_of_a_new_database_creates_nothing(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    lines: list[str] = []

    migrate.run(project.settings, database, status=True, echo=lines.append)

    assert lines == ["0001_accounts  pending", "0 applied, 1 pending"]
    assert not table_exists(database, "public._spreadedge_migration_checksum")


def test_dollar_quoted_do_block_applies(project, database, capsys):
    project.write("migrations/0001_flags.sql.j2", DOLLAR_QUOTED)

    assert run_migrate(database, project) == [
        "applying 0001_flags",
        "NOTICE: seeded 1 flag(s), 100% sure",
        "re-applied 0 function files",
    ]

    assert query(database, "select flag_note('seeded')") == [("[a; b]",)]
    # yoyo prints the rows of a select; migrate keeps them off the terminal.
    assert capsys.readouterr().out == ""


def test_migration_committed_but_not_marked_by_yoyo_counts_as_applied(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    run_migrate(database, project)
    # What a crash between the migration's commit and yoyo's own bookkeeping leaves behind.
    query(database, "delete from _yoyo_migration returning 1")

    assert run_migrate(database, project) == ["up to date", "re-applied 0 function files"]
    assert query(database, "select migration_id from _yoyo_migration") == [("0001_accounts",)]


def test_migration_marked_by_yoyo_without_checksum_is_refused(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    run_migrate(database, project)
    query(database, "delete from public._spreadedge_migration_checksum returning 1")

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "migration 0001_accounts is marked applied in yoyo's _yoyo_migration but has no checksum: "
        "it was applied outside spreadedge migrate, so it cannot be checked as frozen"
    )


def test_last_statement_without_semicolon_still_records_its_checksum(project, database):
    project.write("migrations/0001_accounts.sql.j2", "create table accounts (id bigint) -- no semicolon")

    run_migrate(database, project)

    assert checksums(database) == [
        ("0001_accounts", sha256("create table accounts (id bigint) -- no semicolon"))
    ]


def test_pending_migration_sorting_before_an_applied_one_is_refused(project, database):
    project.write("migrations/0002_balance.sql.j2", "create table balance (id bigint);\n")
    run_migrate(database, project)
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "migration 0001_accounts is pending but sorts before 0002_balance, which is applied: "
        "migrations are append-only, rename it to sort after 0002_balance"
    )


def test_transaction_control_in_a_migration_is_refused(project):
    project.write("migrations/0001_accounts.sql.j2", "begin;\n" + CREATE_ACCOUNTS + "commit;\n")

    with pytest.raises(MigrationError) as refused:
        migrate.render_migrations(project.settings)

    assert str(refused.value) == (
        "migrations/0001_accounts.sql line 1: begin; — each migration runs in one transaction together "
        "with its checksum; remove the transaction control"
    )


def test_non_transactional_migration_is_refused_before_anything_is_applied(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    project.write("migrations/0002_index.sql.j2", "-- transactional: false\ncreate index on accounts (id);\n")

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "migration 0002_index says '-- transactional: false': each migration runs in one transaction "
        "together with its checksum, so that none is ever half-applied"
    )
    assert not table_exists(database, "accounts")


def test_apply_schema_applies_schema_then_functions(project, database):
    project.write(
        "schema/20_balance.sql.j2",
        "alter table accounts add column balance numeric default {{ partition_premake }};\n",
    )
    project.write("schema/10_accounts.sql", CREATE_ACCOUNTS)
    project.write(
        "functions/total.sql",
        "create or replace function total() returns numeric "
        "language sql as 'select sum(balance) from accounts';\n",
    )

    migrate.apply_schema(database, project.settings)

    assert query(
        database,
        "select column_default from information_schema.columns "
        "where table_name = 'accounts' and column_name = 'balance'",
    ) == [("4",)]
    assert query(database, "select total()") == [(None,)]


def test_socket_directory_conninfo_reaches_yoyo_as_libpq_parameters():
    uri = migrate.yoyo_uri("postgresql://spreadedge:s%40cret@/trading?host=/run/se&port=54329")

    assert uri.scheme == "postgresql+psycopg"
    assert uri.database == "trading"
    assert uri.args == {"user": "spreadedge", "password": "s@cret", "host": "/run/se", "port": "54329"}


def test_migrate_as_a_role_that_cannot_create_its_bookkeeping_is_a_migration_error(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    role = f"lowly_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        with pytest.raises(MigrationError) as caught:
            run_migrate(make_conninfo(database, user=role), project)

        # refused before anything, with what a superuser runs (tests/test_nonsuperuser_deploy_hunt.py)
        message = str(caught.value)
        assert message.startswith(
            f"spreadedge migrate refused, nothing was changed: the role {role} is not a superuser and lacks\n"
            "  - CREATE on this database (migrate creates its schemas)\n"
            "  - CREATE on schema public (migrate keeps its ledger and yoyo's tables there)\n"
        )
        assert f"\ngrant usage, create on schema public to {role};\n" in message
        assert not table_exists(database, "accounts")
        assert not table_exists(database, "_spreadedge_migration_checksum")
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


# bug: --status, which applies nothing, said "spreadedge migrate failed, nothing more was applied"
def test_status_as_a_role_that_cannot_read_the_ledger_says_status_could_not_read_it(project, database):
    project.write("migrations/0001_accounts.sql.j2", CREATE_ACCOUNTS)
    run_migrate(database, project)
    role = f"lowly_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        with pytest.raises(MigrationError) as caught:
            migrate.print_status(project.settings, make_conninfo(database, user=role), lambda line: None)

        assert str(caught.value).startswith(
            "spreadedge migrate --status could not read the applied migrations: "
        )
        assert str(caught.value).endswith(
            "(SQLSTATE 42501)\nHINT: run spreadedge migrate --status as a superuser (the embedded cluster's "
            "spreadedge role)"
        )
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_drop_cascade_in_functions_is_refused_before_it_drops_what_a_migration_made(project, database):
    project.write(
        "migrations/0001_accounts.sql.j2",
        "create function opening_balance() returns numeric language sql as 'select 0';\n"
        "create table accounts (id bigint primary key, balance numeric default opening_balance());\n",
    )
    run_migrate(database, project)
    project.write(
        "functions/balance.sql",
        "drop function if exists opening_balance() cascade;\n"
        "create or replace function opening_balance() returns numeric language sql as 'select 0';\n",
    )

    with pytest.raises(MigrationError) as refused:
        run_migrate(database, project)

    assert str(refused.value) == (
        "functions/ holds statements that cannot be re-applied:\n"
        "  functions/balance.sql line 1: drop function if exists opening_balance() cascade;\n"
        + FUNCTIONS_HINT
    )
    assert query(
        database,
        "select column_default from information_schema.columns "
        "where table_name = 'accounts' and column_name = 'balance'",
    ) == [("opening_balance()",)]


def test_migrate_without_any_sql_is_refused_before_touching_any_database(tmp_path, database, monkeypatch):
    # outside the project the code's own SQL is used (test_installed_package_hunt.py): only a
    # spreadedge that carries none is left to refuse
    migrations = without_code_sql(monkeypatch, tmp_path / "code")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"SPREADEDGE_PROJECT_DIR": str(elsewhere), "SPREADEDGE_HOME": str(tmp_path / "home")}

    result = CliRunner().invoke(main, ["--database-url", database, "migrate"], env=env)

    assert (result.exit_code, type(result.exception)) == (1, SystemExit)
    assert result.output == (
        f"Error: {migrations} is not a directory: run spreadedge from the project "
        "directory (the one with migrations/ and functions/) or set SPREADEDGE_PROJECT_DIR\n"
    )
    assert not table_exists(database, "public._spreadedge_migration_checksum")
    assert not (tmp_path / "home").exists()


def test_render_only_with_status_is_a_usage_error_that_writes_nothing(tmp_path):
    out = tmp_path / "rendered"
    env = {"SPREADEDGE_HOME": str(tmp_path / "home")}

    result = CliRunner().invoke(main, ["migrate", "--render-only", str(out), "--status"], env=env)

    assert result.exit_code == 2
    assert "Error: --render-only and --status cannot be used together" in result.output
    assert not out.exists()
    assert not (tmp_path / "home").exists()


def test_migrate_from_a_session_in_another_time_zone_makes_partitions_at_utc_midnights(
    database, project_settings, monkeypatch
):
    # pg_partman computes partition bounds in the session TimeZone: under PGTZ=America/New_York
    # the daily partitions of the migrations began at 05:00 UTC
    monkeypatch.setenv("PGTZ", "America/New_York")
    migrate.migrate(database, project_settings, echo=lambda line: None)
    with psycopg.connect(database) as conn:
        conn.execute("set timezone = 'UTC'")  # show_partition_info reads the bounds in it
        misaligned = conn.execute(
            "select p.partition_tablename, i.child_start_time from partman.show_partitions('market.ticks') p,"
            " partman.show_partition_info(p.partition_schemaname || '.' || p.partition_tablename) i"
            " where (i.child_start_time at time zone 'UTC')::time <> '00:00'"
        ).fetchall()
    assert misaligned == []


def test_a_migrated_database_defaults_its_sessions_to_utc(database, project_settings):
    # a server installed with the machine's zone gave psql and pg_cron's jobs that zone
    migrate.migrate(database, project_settings, echo=lambda line: None)
    with psycopg.connect(database) as conn:
        settings = conn.execute(
            "select s.setconfig from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase"
            " where d.datname = current_database() and s.setrole = 0"
        ).fetchone()
    assert settings is not None and "TimeZone=UTC" in settings[0]


def test_a_notice_a_migration_raises_is_shown_and_a_server_remark_is_not(project, database):
    project.write(
        "migrations/0001_notes.sql.j2",
        "drop function if exists public.no_such_function();\n"
        "do $$ begin raise notice 'rules left as they were: %', 'r1, r2'; end $$;\n",
    )
    assert run_migrate(database, project) == [
        "applying 0001_notes",
        "NOTICE: rules left as they were: r1, r2",
        "re-applied 0 function files",
    ]
