"""``make bench-backup``: pgBackRest backup and restore of a generated database, per compression type.

A scratch cluster (migrated, never the embedded one) is filled with generated rows up to
``--size-gb`` (market ticks: numbers, times and ids, as the real tables hold them), then for each
compression type (gz, bz2, lz4, zst): ``spreadedge backup init`` into a repository of its own,
``spreadedge backup full`` (timed), and ``spreadedge restore --to`` a new directory (timed; the
pgBackRest restore, not the recovery at first start). Reported: seconds each way, the size in the
repository, and database size / repository size. The repository is not encrypted here, so the
figures are those of compression alone. Results also go to bench/results/backup.json.

    .venv/bin/python -m bench.backup [--size-gb 2] [--types gz,bz2,lz4,zst]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench.scratch import PROJECT_DIR, scratch_cluster
from spreadedge import textable
from spreadedge.cluster import Cluster

RESULTS = PROJECT_DIR / "bench" / "results" / "backup.json"
SPREADEDGE = Path(sys.executable).parent / "spreadedge"
BATCH_ROWS = 1_000_000


def echo(message: str) -> None:
    print(message, flush=True)


def fill(cluster: Cluster, size_gb: float) -> int:
    """Insert ticks in batches until the database holds ``size_gb``; its size in bytes."""
    target = int(size_gb * 1024**3)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            "select ref.upsert_instrument(exchange => 'binance', symbol => 'BTCUSDT', base_asset => 'BTC',"
            " quote_asset => 'USDT', market_type => 'spot', tick_size => 0.01, lot_size => 0.00001,"
            " min_notional => 5)"
        )
        # market.latest_prices would be updated per statement; irrelevant to a backup bench
        conn.execute("alter table market.ticks disable trigger user")
        batch = 0
        while True:
            size = int(conn.execute("select pg_database_size(current_database())").fetchone()[0])
            echo(f"  generated {size / 1024**3:.2f} GB of {size_gb:g} GB")
            if size >= target:
                return size
            conn.execute(
                "insert into market.ticks"
                " (instrument_id, traded_at, exchange_trade_id, price, quantity, side)"
                " select (select min(instrument_id) from ref.instruments),"
                " now() - ((%(offset)s + i) * interval '10 milliseconds'),"
                " 'T' || (%(offset)s + i), round((60000 + random() * 1000)::numeric, 2),"
                " round((random() * 2)::numeric, 5) + 0.00001,"
                " (case when random() < 0.5 then 'buy' else 'sell' end)::trading.order_side"
                " from generate_series(1, %(rows)s) i",
                {"offset": batch * BATCH_ROWS, "rows": BATCH_ROWS},
            )
            batch += 1


def run(args: list[str], env: dict[str, str]) -> float:
    """Seconds ``spreadedge ARGS`` took; exits the bench when it fails."""
    started = time.monotonic()
    result = subprocess.run([str(SPREADEDGE), *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"spreadedge {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return time.monotonic() - started


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="Size of the generated database.")
    parser.add_argument("--types", default="gz,bz2,lz4,zst", help="Compression types, comma-separated.")
    options = parser.parse_args()
    types = [t for t in options.types.split(",") if t]
    rows = []
    with scratch_cluster(keep=False, echo=echo) as cluster:
        env = {
            **os.environ,
            "SPREADEDGE_PROJECT_DIR": str(PROJECT_DIR),
            "SPREADEDGE_HOME": str(cluster.home),
            "SPREADEDGE_PORT": str(cluster.port),
        }
        env.pop("DATABASE_URL", None)
        env.pop("SPREADEDGE_BACKUP_PASSPHRASE", None)
        echo(f"generating about {options.size_gb:g} GB")
        db_size = fill(cluster, options.size_gb)
        for compress_type in types:
            repo = cluster.home.parent / f"repo-{compress_type}"
            target = cluster.home.parent / f"restored-{compress_type}"
            echo(f"{compress_type}: init, full backup, restore")
            run(["backup", "init", "--compress-type", compress_type, "--repo-path", str(repo)], env)
            backup_s = run(["backup", "full"], env)
            stored = du(repo / "backup")
            restore_s = run(["restore", "--to", str(target)], env)
            restored = du(target / "cluster")
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(repo, ignore_errors=True)
            rows.append(
                {
                    "compress_type": compress_type,
                    "database_bytes": db_size,
                    "restored_bytes": restored,
                    "repository_bytes": stored,
                    "backup_s": round(backup_s, 1),
                    "restore_s": round(restore_s, 1),
                    "restored_to_repository_ratio": round(restored / stored, 2),
                }
            )
    echo(
        textable.render(
            ["compress", "backup s", "restore s", "restored size", "in repository", "restored / repository"],
            [
                [
                    r["compress_type"],
                    f"{r['backup_s']:.1f}",
                    f"{r['restore_s']:.1f}",
                    f"{r['restored_bytes'] / 1024**3:.2f} GB",
                    f"{r['repository_bytes'] / 1024**3:.2f} GB",
                    f"{r['restored_to_repository_ratio']:.2f}",
                ]
                for r in rows
            ],
            [False, True, True, True, True, True],
        )
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"size_gb": options.size_gb, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
