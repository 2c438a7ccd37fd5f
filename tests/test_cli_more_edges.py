"""More edges of the CLI and its foundations: what pnl shows for a quote asset that is not counted
in cents, backup settings that would quietly change where or how backups are written, and a
`db start` that was cut short."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from spreadedge import runas
from spreadedge.cli import main
from spreadedge.cluster import PG_BINDIR, Cluster
from spreadedge.settings import SettingsError, load_settings
from trading_helpers import list_binance_eth_btc, trade


def test_pnl_table_shows_money_in_btc_to_the_satoshi_not_as_zero(seeded: psycopg.Connection, seeded_url: str):
    # an ETH/BTC round trip: 0.0042 BTC gross, 0.0001042 BTC of fees; at two decimals, as USDT
    # amounts are shown, every money column of this strategy read 0.00 (or 0.10)
    list_binance_eth_btc(seeded)
    eth_btc = {"symbol": "ETHBTC", "fee_currency": "BTC"}
    trade(seeded, "buy", "1", "0.05", fee=Decimal("0.00005"), **eth_btc)
    trade(seeded, "sell", "1", "0.0542", fee=Decimal("0.0000542"), **eth_btc)

    result = CliRunner().invoke(main, ["--database-url", seeded_url, "pnl"])

    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            "strategy  quote  trades  volume    notional        fees   gross pnl     funding     net pnl"
            "  unrealized pnl",
            "--------  -----  ------  ------  ----------  ----------  ----------  ----------  ----------"
            "  --------------",
            "alpha     BTC         2       2  0.10420000  0.00010420  0.00420000  0.00000000  0.00409580"
            "      0.00000000",
        ],
    )


def test_a_relative_backup_path_in_the_settings_file_is_taken_from_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "spreadedge.toml").write_text('[backup]\ndump_dir = "dumps"\nrepo_path = "backups/repo"\n')
    # where the cron entries of `backup schedule` run: the user's home, not the project
    monkeypatch.chdir(elsewhere)

    backup = load_settings(project_dir=project, env={}).backup

    assert (backup.dump_dir, backup.repo_path) == (project / "dumps", project / "backups" / "repo")


@pytest.mark.parametrize("name", ["", "MY PASSPHRASE", "1PASS"])
def test_a_backup_passphrase_env_that_no_variable_can_have_is_refused(tmp_path: Path, name: str):
    # os.environ.get(name) is None for these: backup init made an unencrypted repository although
    # SPREADEDGE_BACKUP_PASSPHRASE was set
    env = {"SPREADEDGE_BACKUP_PASSPHRASE_ENV": name, "SPREADEDGE_BACKUP_PASSPHRASE": "correct horse"}

    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env=env)

    assert str(caught.value) == (
        "backup passphrase_env must be the name of an environment variable (letters, digits and '_', "
        f"not starting with a digit), got {name!r}"
    )


def test_db_start_after_a_start_cut_short_once_the_server_ran_creates_the_database(
    make_cluster: Callable[[], Cluster],
):
    cluster = make_cluster()
    cluster.init()
    # what Ctrl-C during `db start` leaves once pg_ctl has launched the server (it starts on in its
    # own session): a running server, without the spreadedge database and the TCP password
    pg_ctl = [str(PG_BINDIR / "pg_ctl"), "start", "-w", "-D", str(cluster.data_dir.resolve())]
    subprocess.run(
        runas.command([*pg_ctl, "-l", str(cluster.log_file.resolve())]),
        cwd="/",
        check=True,
        capture_output=True,
    )
    env = {"SPREADEDGE_HOME": str(cluster.home), "SPREADEDGE_PORT": str(cluster.port), "DATABASE_URL": None}

    result = CliRunner().invoke(main, ["db", "start"], env=env)

    assert (result.exit_code, result.output) == (
        0,
        f"embedded cluster already running on port {cluster.port} ({cluster.data_dir.resolve()})\n",
    )
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("select current_database()").fetchone() == ("spreadedge",)
    assert (cluster.home / "password").exists()
