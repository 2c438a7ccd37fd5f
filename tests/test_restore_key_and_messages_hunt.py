"""Two small gaps.

1. `restore --to DIR` (the same machine: the home's master.key is copied into DIR) now gets the
   first-start check `restore --repo` has: the restored home's first `db start` checks the master
   key in use against the restored API keys. A home whose key was rotated after the backup (a
   point-in-time restore from before the rotation), or whose key file was missing, used to start
   quietly with API keys that no key in reach decrypts.
2. trading.place_order's tick, lot and minimum-notional refusals show the instrument's rule as they
   show the order's value (internal.number_shown), and ref.upsert_instrument refuses a tick or lot
   below 10^-30.

One source cluster and two restored clusters for the module (pgBackRest, real WAL replay); all
are stopped at its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal as D

import psycopg
import pytest

from auth_helpers import make_user, reveal_key, store_key
from db_fixtures import _seed
from ops_helpers import archive_current_wal, cli
from spreadedge import masterkey
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from test_instruments import upsert
from trading_helpers import counts, place

# -- 1. restore --to checks the master key at the restored home's first start -----------------------

PASSPHRASE = "key check passphrase 11 of the repository"
OLD_KEY = "master-key-before-rotation-0123456789-abcdef"
NEW_KEY = "master-key-after-the-rotation-0123456789-xyz"
SECRETS = (PASSPHRASE, OLD_KEY, NEW_KEY)
# the file a restore leaves in the home for its first start to check the master key
MARKER = "restore-pending"


@dataclass
class Restored:
    """A home restored with `restore --to`, and what its commands printed (exit code, output)."""

    cluster: Cluster
    env: dict[str, str]
    restore_output: str
    marker_text: str
    starts: list[tuple[int, str]]


@dataclass
class Restores:
    source: Cluster
    latest: Restored  # to the end of the archived WAL: the API keys under the new key
    before_rotation: Restored  # to a time before the rotation: the API keys under the old key
    key_id: int


def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = cli(*args, env=env)
    assert not any(secret in result.output for secret in SECRETS), result.output
    return result.exit_code, result.output


def _ok(*args: str, env: dict[str, str]) -> str:
    code, output = _run(*args, env=env)
    assert code == 0, output
    return output


def _restore(make_cluster: Callable[..., Cluster], source_env: dict[str, str], *args: str) -> Restored:
    cluster = make_cluster()
    output = _ok("restore", "--to", str(cluster.home), *args, env=source_env)
    marker = cluster.home / MARKER
    env = {
        "SPREADEDGE_HOME": str(cluster.home),
        "SPREADEDGE_PORT": str(cluster.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    return Restored(cluster, env, output, marker.read_text() if marker.exists() else "", [])


@pytest.fixture(scope="module")
def restores(make_cluster: Callable[..., Cluster], project_settings: Settings) -> Iterator[Restores]:
    source = make_cluster()
    source.start()
    migrate(source.url(), project_settings, echo=lambda line: None)
    source_env = {
        "SPREADEDGE_HOME": str(source.home),
        "SPREADEDGE_PORT": str(source.port),
        "SPREADEDGE_BACKUP_PASSPHRASE": PASSPHRASE,
    }
    key_file = source.home / masterkey.KEY_FILE_NAME
    masterkey.write_key_file(key_file, OLD_KEY)
    _ok("backup", "init", "--compress-type", "lz4", env=source_env)
    with psycopg.connect(source.url(), autocommit=True) as conn:
        _seed(conn)
        conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
        key_id = store_key(conn, make_user(conn, "alice", "trader"), master_key=OLD_KEY)
        _ok("backup", "full", env=source_env)
        # why the wait: a point-in-time restore needs a backup that ended a second before the target
        time.sleep(1.2)
        before_rotation = conn.execute("select clock_timestamp()::text").fetchone()[0]
        # the key is rotated after the backup, and the home's key file replaced by the new key
        new_key_file = source.home.parent / "new-master.key"
        masterkey.write_key_file(new_key_file, NEW_KEY)
        _ok("keys", "rotate", "--new-key-file", str(new_key_file), env=source_env)
        key_file.unlink()
        new_key_file.rename(key_file)
        archive_current_wal(conn)
    latest = _restore(make_cluster, source_env)
    latest.starts.append(_run("db", "start", env=latest.env))
    latest.starts.append(_run("db", "start", env=latest.env))
    old = _restore(make_cluster, source_env, "--target-time", before_rotation)
    restored_key = old.cluster.home / masterkey.KEY_FILE_NAME
    old.starts.append(_run("db", "start", env=old.env))  # the new key, copied from the home
    restored_key.unlink()
    old.starts.append(_run("db", "start", env=old.env))  # no key file at all
    masterkey.write_key_file(restored_key, OLD_KEY)
    old.starts.append(_run("db", "start", env=old.env))  # the key the API keys were stored under
    old.starts.append(_run("db", "start", env=old.env))
    yield Restores(source, latest, old, key_id)
    old.cluster.stop()
    latest.cluster.stop()
    source.stop()


def _check_lines(output: str) -> list[str]:
    """The lines of a `db start` after its first (the cluster started) but its pg_cron ones."""
    return [line for line in output.splitlines()[1:] if not line.startswith("pg_cron job")]


def test_a_normal_restore_to_start_says_the_master_key_opens_the_api_keys(restores):
    restored = restores.latest
    key_file = restored.cluster.home / masterkey.KEY_FILE_NAME
    (code, output), (again_code, again) = restored.starts

    assert f"master key {restores.source.home / 'master.key'} copied to {key_file}" in restored.restore_output
    assert (code, _check_lines(output)) == (
        0,
        [f"master key {key_file} opens the restored API keys (version 2)"],
    )
    assert (again_code, again) == (
        0,
        f"embedded cluster already running on port {restored.cluster.port} ({restored.cluster.data_dir})\n",
    )
    assert not (restored.cluster.home / MARKER).exists()
    with psycopg.connect(restored.cluster.url(), autocommit=True) as conn:
        assert reveal_key(conn, restores.key_id, NEW_KEY)["api_secret"] == "s3cret-binance-0001"


def test_a_restore_to_whose_copied_key_is_not_the_api_keys_one_fails_its_first_start(restores):
    restored = restores.before_rotation
    key_file = restored.cluster.home / masterkey.KEY_FILE_NAME
    code, output = restored.starts[0]

    assert (code, _check_lines(output)) == (
        1,
        [
            f"Error: the restored cluster runs, but its API keys cannot be decrypted: the master key ({key_file})"
            " is not master key version 1, which the API keys are encrypted under",
            f"hint: put the master key they were stored under into {key_file} (mode 0600), then run"
            " `spreadedge db start` again to check it",
        ],
    )


def test_a_restore_to_without_a_key_file_fails_its_first_start_naming_the_file(restores):
    restored = restores.before_rotation
    key_file = restored.cluster.home / masterkey.KEY_FILE_NAME
    code, output = restored.starts[1]

    assert (code, _check_lines(output)) == (
        1,
        [
            f"Error: the restored cluster runs, but its API keys cannot be decrypted: no master key:"
            f" {key_file} does not exist",
            f"hint: put the master key they were stored under into {key_file} (mode 0600), then run"
            " `spreadedge db start` again to check it",
        ],
    )


def test_the_right_key_then_passes_the_check_once(restores):
    restored = restores.before_rotation
    key_file = restored.cluster.home / masterkey.KEY_FILE_NAME
    (code, output), (again_code, again) = restored.starts[2:]

    assert (code, _check_lines(output)) == (
        0,
        [f"master key {key_file} opens the restored API keys (version 1)"],
    )
    assert (again_code, again) == (
        0,
        f"embedded cluster already running on port {restored.cluster.port} ({restored.cluster.data_dir})\n",
    )
    assert not (restored.cluster.home / MARKER).exists()
    with psycopg.connect(restored.cluster.url(), autocommit=True) as conn:
        assert reveal_key(conn, restores.key_id, OLD_KEY)["api_secret"] == "s3cret-binance-0001"


def test_the_marker_a_restore_to_leaves_holds_no_secret(restores):
    for restored in (restores.latest, restores.before_rotation):
        assert restored.marker_text.startswith("# Written by spreadedge restore")
        assert not any(secret in restored.marker_text for secret in SECRETS)
        assert "checks the master key" in restored.restore_output


# -- 2. the instrument's rules in place_order's refusals ------------------------------------------------

TINY = {"symbol": "TINYUSDT", "base_asset": "TINY"}


def _tiny(conn: psycopg.Connection, **rules: D) -> None:
    """List TINYUSDT on binance (tick 0.01, lot 0.0001, no minimum), then give it these rules as an
    instrument listed before ref.upsert_instrument bounded them would have them."""
    upsert(conn, **TINY, min_notional=D(0))
    for rule, value in rules.items():
        conn.execute(
            psycopg.sql.SQL("update ref.instruments set {} = %s where symbol = 'TINYUSDT'").format(
                psycopg.sql.Identifier(rule)
            ),
            [value],
        )


def _refusal(
    conn: psycopg.Connection, quantity: str, price: str | None, **kwargs: object
) -> tuple[str, str, str]:
    with pytest.raises(psycopg.Error) as caught:
        place(conn, "buy", quantity, price, symbol="TINYUSDT", **kwargs)
    error = caught.value
    return error.sqlstate, error.diag.message_primary, error.diag.message_hint


# bug: the instrument's tick size was printed raw: a tick of 1e-300 made a message of 300 digits
def test_a_price_off_a_tick_of_1e_300_is_refused_with_the_tick_shown_short(seeded):
    _tiny(seeded, tick_size=D("1e-300"))

    assert _refusal(seeded, "1", "1.5e-300") == (
        "22S03",
        "price 1.500e-300 is not a multiple of the tick size 1.000e-300 of TINYUSDT",
        "Round the price to a multiple of 1.000e-300.",
    )


def test_a_stop_price_off_a_tick_of_1e_300_is_refused_with_the_tick_shown_short(seeded):
    _tiny(seeded, tick_size=D("1e-300"))

    assert _refusal(seeded, "1", None, order_type="stop_market", stop_price=D("2.5e-300")) == (
        "22S03",
        "stop price 2.500e-300 is not a multiple of the tick size 1.000e-300 of TINYUSDT",
        "Round the stop price to a multiple of 1.000e-300.",
    )


def test_a_quantity_off_a_lot_of_1e_300_is_refused_with_the_lot_shown_short(seeded):
    _tiny(seeded, lot_size=D("1e-300"))

    assert _refusal(seeded, "1.5e-300", "60000") == (
        "22S04",
        "quantity 1.500e-300 is not a multiple of the lot size 1.000e-300 of TINYUSDT",
        "Round the quantity to a multiple of 1.000e-300.",
    )


def test_a_notional_below_a_minimum_of_300_decimals_is_refused_with_the_minimum_shown_short(seeded):
    upsert(seeded, **TINY, min_notional=D("10." + "0" * 299 + "1"))

    assert _refusal(seeded, "0.001", "5000") == (
        "22S05",
        "order notional 5.000 is below the minimum 1.000e+01 of TINYUSDT",
        "Increase the quantity.",
    )


def test_ordinary_rules_read_as_listed_in_the_refusals(seeded):
    upsert(seeded, **TINY, tick_size=D("0.00001"), lot_size=D("0.001"), min_notional=D("12.5"))

    assert [
        _refusal(seeded, "1", "100.000001"),
        _refusal(seeded, "1.0001", "100"),
        _refusal(seeded, "0.001", "100"),
    ] == [
        (
            "22S03",
            "price 100.000001 is not a multiple of the tick size 0.00001 of TINYUSDT",
            "Round the price to a multiple of 0.00001.",
        ),
        (
            "22S04",
            "quantity 1.0001 is not a multiple of the lot size 0.001 of TINYUSDT",
            "Round the quantity to a multiple of 0.001.",
        ),
        ("22S05", "order notional 0.100 is below the minimum 12.5 of TINYUSDT", "Increase the quantity."),
    ]


# bug: ref.upsert_instrument listed a tick or lot of 1e-300 (no exchange has one below 10^-30): an
# order's price or quantity then had to carry 300 decimals into trades, positions and rollups
@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("tick_size", "tick size must be at least 10^-30, got 1.000e-300"),
        ("lot_size", "lot size must be at least 10^-30, got 1.000e-300"),
    ],
)
def test_a_tick_or_lot_of_1e_300_is_an_invalid_argument(seeded, rule, message):
    before = counts(seeded)
    with pytest.raises(psycopg.Error) as caught:
        upsert(seeded, **TINY, **{rule: D("1e-300")})

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == ("22S09", message)
    assert counts(seeded) == before


def test_an_update_to_a_tick_size_just_below_10_to_the_minus_30_is_refused_and_keeps_the_listed_one(seeded):
    with pytest.raises(psycopg.Error) as caught:
        upsert(seeded, tick_size=D("0.99e-30"))

    assert (caught.value.sqlstate, caught.value.diag.message_primary) == (
        "22S09",
        "tick size must be at least 10^-30, got 0.00000000000000000000000000000099",
    )
    assert seeded.execute("select tick_size from ref.instruments where symbol = 'BTCUSDT'").fetchone() == (
        D("0.01"),
    )


def test_a_tick_and_lot_of_10_to_the_minus_30_are_listed(seeded):
    smallest = D("1e-30")
    upsert(seeded, **TINY, tick_size=smallest, lot_size=smallest)

    assert seeded.execute(
        "select tick_size, lot_size from ref.instruments where symbol = 'TINYUSDT'"
    ).fetchone() == (smallest, smallest)
