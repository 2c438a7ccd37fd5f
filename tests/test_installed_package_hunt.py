"""spreadedge installed from its wheel (not editable) and run outside the checkout.

A trading application installs spreadedge into its own virtual environment and runs from its own
directory; an operator installs the CLI the same way and runs it with DATABASE_URL from anywhere.
The wheel is built once for the module from a copy of this checkout and installed into a fresh
virtual environment of the system Python, whose only other path entry is the project's
.venv site-packages (the pinned dependencies; its .pth files, among them the editable install's
path to python/, are not read). Every command runs in a directory outside the checkout, without
SPREADEDGE_PROJECT_DIR, PYTHONPATH or SPREADEDGE_SETTINGS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from conftest import free_port, new_home
from db_fixtures import janitor
from spreadedge.cluster import Cluster
from spreadedge.migrate import render_migrations
from spreadedge.settings import Settings
from spreadedge.sqlfiles import function_files

PROJECT = Path(__file__).resolve().parent.parent
# What a build needs from the checkout (setup.py and MANIFEST.in are absent from older trees).
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "python",
    "migrations",
    "functions",
    "schema",
)
SQL_DIRS = ("migrations", "functions", "schema")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    dependencies: Path  # the project's .venv site-packages (which may lie inside the checkout)
    elsewhere: Path  # a directory outside the checkout, the working directory of every command

    @property
    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3.*/site-packages"))

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an installed command: no variable that points at the checkout."""
        drop = ("PYTHONPATH", "DATABASE_URL", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SPREADEDGE_")}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return env | extra

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.elsewhere,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, code: str, *args: str, **env: str) -> dict:
        """Run ``code`` with the installed package's interpreter; its last stdout line as JSON."""
        done = self.run("python", "-c", code, *args, **env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])


def _copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    source, wheels, venv = root / "source", root / "wheels", root / "venv"
    # why a copy: a build writes build/ and *.egg-info into its source tree, and tests leave the
    # checkout as they found it
    source.mkdir()
    _copy_sources(source)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True, timeout=300)
    (wheel,) = wheels.glob("spreadedge-*.whl")
    # the interpreter .venv was made from (bootstrap.sh: /usr/bin/python3), so its binary
    # dependencies fit; without pip: this venv's pip is the project's, pointed at it by --python
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (site_packages,) = (venv / "lib").glob("python3.*/site-packages")
    dependencies = Path(sysconfig.get_paths()["purelib"])
    (site_packages / "spreadedge_test_dependencies.pth").write_text(f"{dependencies}\n")
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
    )
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    yield Installed(wheel, venv, dependencies, elsewhere)


def test_the_installed_package_is_imported_from_the_virtual_environment_not_the_checkout(installed):
    # the premise of every other test here: nothing of the checkout is on the installed package's path
    found = installed.python(
        "import json, sys, spreadedge; print(json.dumps([spreadedge.__file__, sys.path]))"
    )

    assert found[0] == str(installed.site_packages / "spreadedge" / "__init__.py")
    checkout = [p for p in found[1] if p and Path(p).resolve().is_relative_to(PROJECT)]
    assert [Path(p).resolve() for p in checkout] in ([], [installed.dependencies.resolve()])


def test_the_wheel_carries_the_sql_of_migrations_functions_and_schema(installed):
    # the wheel held py.typed as its only data: no migration, function or schema file
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("spreadedge/sql/")}
    expected = {
        f"spreadedge/sql/{path.relative_to(PROJECT).as_posix()}"
        for directory in SQL_DIRS
        for path in (PROJECT / directory).rglob("*")
        if path.is_file() and path.name.endswith((".sql", ".sql.j2"))
    }

    assert len(expected) > 100
    assert shipped == expected


def test_installed_migrate_applies_every_migration_to_a_fresh_database(installed, pg_cluster: Cluster):
    # it refused: "<cwd>/migrations is not a directory: run spreadedge from the project directory"
    with janitor(pg_cluster, "installed_fresh"):
        url = pg_cluster.url("installed_fresh")
        done = installed.run("spreadedge", "migrate", DATABASE_URL=url, timeout=60)
        status = installed.run("spreadedge", "migrate", "--status", DATABASE_URL=url)

    count = len(list((PROJECT / "migrations").glob("*.sql.j2")))
    functions = len(function_files(PROJECT / "functions"))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1] == f"re-applied {functions} function files"
    assert (status.returncode, status.stdout.splitlines()[-1]) == (0, f"{count} applied, 0 pending")


def test_installed_migrate_status_finds_a_database_migrated_from_the_checkout_current(
    installed, db_url: str, project_settings: Settings
):
    done = installed.run("spreadedge", "migrate", "--status", DATABASE_URL=db_url)

    applied = len(render_migrations(project_settings))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1] == f"{applied} applied, 0 pending"
    assert all(line.endswith("checksum ok") for line in done.stdout.splitlines()[:-1])


def test_installed_health_reports_the_migrations_current(installed, db_url: str, project_settings: Settings):
    # it refused like migrate; the last_backup check fails on a database never backed up
    done = installed.run("spreadedge", "health", DATABASE_URL=db_url)

    applied = len(render_migrations(project_settings))
    assert done.stderr == ""
    assert f"  ok    migrations                {applied} applied" in done.stdout.splitlines()


def test_installed_managers_health_check_finds_the_migrations_current(
    installed, db_url: str, project_settings: Settings
):
    # it was unhealthy: "no migrations directory at <venv>/lib/python3.11/migrations"
    code = (
        "import asyncio, json, sys\n"
        "from spreadedge.managers import ManagerConfig, get_database_manager\n"
        "async def main():\n"
        "    manager = get_database_manager(ManagerConfig(database_url=sys.argv[1], actor='installed'))\n"
        "    try:\n"
        "        return await manager.health_check()\n"
        "    finally:\n"
        "        await manager.close()\n"
        "report = asyncio.run(main())\n"
        "print(json.dumps([report.healthy, report.checks['migrations']]))\n"
    )

    applied = len(render_migrations(project_settings))
    assert installed.python(code, db_url) == [True, [True, f"{applied} applied"]]


def test_installed_order_manager_places_an_order(installed, seeded_url: str):
    code = (
        "import asyncio, json, sys\n"
        "from decimal import Decimal\n"
        "from spreadedge.managers import ManagerConfig, OrderRequest, PersistentOrderManager\n"
        "async def main():\n"
        "    orders = PersistentOrderManager(ManagerConfig(database_url=sys.argv[1], actor='installed'))\n"
        "    await orders.start()\n"
        "    try:\n"
        "        request = OrderRequest('alpha', 'binance', 'BTCUSDT', 'buy', Decimal('0.5'), Decimal('60000'),"
        " client_order_id='installed-1')\n"
        "        return (await orders.place_order(request)).order_id\n"
        "    finally:\n"
        "        await orders.close()\n"
        "print(json.dumps(asyncio.run(main())))\n"
    )

    order_id = installed.python(code, seeded_url)

    with psycopg.connect(seeded_url) as conn:
        row = conn.execute(
            "select client_order_id, quantity::text, price::text from trading.orders where order_id = %s",
            [order_id],
        ).fetchone()
    assert row == ("installed-1", "0.5", "60000")


def test_installed_managers_without_settings_use_the_working_directory_and_the_packages_sql(installed):
    # they took the settings and the embedded cluster of <venv>/lib/python3.11, and no migrations
    code = (
        "import json\n"
        "from spreadedge.managers import ManagerConfig\n"
        "s = ManagerConfig().resolved_settings()\n"
        "print(json.dumps([str(s.home), str(s.migrations_dir), str(s.functions_dir)]))\n"
    )

    package = installed.site_packages / "spreadedge" / "sql"
    assert installed.python(code) == [
        str(installed.elsewhere / ".spreadedge"),
        str(package / "migrations"),
        str(package / "functions"),
    ]


def _health(port: int, process: subprocess.Popen[str]) -> dict:
    """The serve process's health answer, once it listens (within 30 s)."""
    give_up = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/historical/health", timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:
            return json.load(exc)
        except OSError:
            if process.poll() is not None or time.monotonic() > give_up:
                raise
            time.sleep(0.2)


def test_installed_serve_health_endpoint_reports_the_migrations_current(
    installed, db_url: str, project_settings: Settings
):
    # serve refused to start: "<cwd>/migrations is not a directory"
    port = free_port()
    process = subprocess.Popen(
        [str(installed.venv / "bin" / "spreadedge"), "serve", "--port", str(port)],
        cwd=installed.elsewhere,
        env=installed.env(DATABASE_URL=db_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer = _health(port, process)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)

    applied = len(render_migrations(project_settings))
    checks = {check["name"]: [check["ok"], check["detail"]] for check in answer["checks"]}
    assert (answer["status"], checks["migrations"]) == ("healthy", [True, f"{applied} applied"]), stderr


def test_installed_db_start_without_a_database_url_makes_the_cluster_in_the_working_directory(installed):
    # it refused: "no embedded cluster is created in <cwd>/.spreadedge: run spreadedge from the project"
    parent = new_home().parent  # readable by the server's system user when the tests run as root
    directory, port = parent / "trading-app", free_port()
    directory.mkdir()
    try:
        done = subprocess.run(
            [str(installed.venv / "bin" / "spreadedge"), "db", "start"],
            cwd=directory,
            env=installed.env(SPREADEDGE_PORT=str(port)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        Cluster(directory / ".spreadedge", port).destroy()
        shutil.rmtree(parent, ignore_errors=True)

    assert (done.returncode, done.stderr) == (0, "")
    cluster_dir = directory.resolve() / ".spreadedge" / "cluster"
    assert done.stdout == f"embedded cluster started on port {port} ({cluster_dir})\n"


def test_installed_migrate_in_a_directory_with_an_alembic_migrations_takes_the_packages_sql(
    installed, db_url: str, tmp_path: Path
):
    # a trading application's own migrations/ (Flask-Migrate's layout) was taken for spreadedge's:
    # "migration 0001_initial was applied but migrations/0001_initial.sql.j2 is gone" here, and a
    # fresh database reported "up to date" with nothing applied
    app = tmp_path / "trading-app"
    (app / "migrations" / "versions").mkdir(parents=True)
    (app / "migrations" / "env.py").write_text("# alembic\n")
    (app / "migrations" / "alembic.ini").write_text("[alembic]\n")
    (app / "migrations" / "versions" / "0001_orders.py").write_text("revision = '0001'\n")

    done = subprocess.run(
        [str(installed.venv / "bin" / "spreadedge"), "migrate"],
        cwd=app,
        env=installed.env(DATABASE_URL=db_url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    functions = len(function_files(PROJECT / "functions"))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-2:] == ["up to date", f"re-applied {functions} function files"]
