"""Running pgbench against the scratch cluster and reading its result."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from spreadedge.cluster import PG_BINDIR, SUPERUSER, Cluster

PGBENCH = PG_BINDIR / "pgbench"

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms$", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


class PgbenchError(RuntimeError):
    """pgbench failed or printed something this module cannot read."""


@dataclass(frozen=True)
class PgbenchRun:
    """What one timed pgbench run measured."""

    tps: float
    latency_ms: float
    transactions: int
    failed: int
    clients: int
    duration_s: int

    def as_json(self) -> dict[str, float | int]:
        return {
            "tps": round(self.tps, 1),
            "latency_ms": round(self.latency_ms, 3),
            "transactions": self.transactions,
            "failed": self.failed,
            "clients": self.clients,
            "duration_s": self.duration_s,
        }


def threads(clients: int) -> int:
    """pgbench's worker threads (-j) for ``clients`` clients: two at most, as the bench machine has."""
    return min(clients, 2)


def _connection_args(cluster: Cluster, dbname: str) -> list[str]:
    return ["-h", str(cluster.socket_dir.resolve()), "-p", str(cluster.port), "-U", SUPERUSER, dbname]


def _run(args: list[str]) -> str:
    result = subprocess.run(
        [str(PGBENCH), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PgbenchError(
            f"pgbench {' '.join(args)} failed:\n{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout + result.stderr


def initialize(cluster: Cluster, dbname: str, scale: int) -> None:
    """``pgbench -i -s scale`` in ``dbname`` (quietly)."""
    _run(["-i", "-q", "-s", str(scale), *_connection_args(cluster, dbname)])


def run(
    cluster: Cluster,
    dbname: str,
    *,
    clients: int,
    duration: int,
    builtin: str | None = None,
    script: Path | None = None,
    defines: dict[str, int | str] | None = None,
) -> PgbenchRun:
    """One timed run: a built-in script (``tpcb-like``, ``select-only``) or a script file.

    Script files run with ``-n`` (no vacuum of the pgbench tables, which only built-in runs have).
    """
    if (builtin is None) == (script is None):
        raise ValueError("give exactly one of builtin and script")
    args = ["-c", str(clients), "-j", str(threads(clients)), "-T", str(duration)]
    if builtin is not None:
        args += ["-b", builtin]
    else:
        args += ["-n", "-f", str(script)]
    for name, value in (defines or {}).items():
        args += ["-D", f"{name}={value}"]
    output = _run(args + _connection_args(cluster, dbname))
    tps, latency, processed = _TPS.search(output), _LATENCY.search(output), _PROCESSED.search(output)
    if tps is None or latency is None or processed is None:
        raise PgbenchError(f"cannot read the result of pgbench {' '.join(args)}:\n{output}")
    failed = _FAILED.search(output)
    return PgbenchRun(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)),
        transactions=int(processed.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        clients=clients,
        duration_s=duration,
    )


def combine(runs: list[PgbenchRun]) -> PgbenchRun:
    """Runs of the same script taken together: transactions and time add up."""
    if not runs:
        raise ValueError("nothing to combine")
    duration = sum(run.duration_s for run in runs)
    transactions = sum(run.transactions for run in runs)
    return PgbenchRun(
        tps=sum(run.tps * run.duration_s for run in runs) / duration,
        latency_ms=sum(run.latency_ms * run.transactions for run in runs) / max(transactions, 1),
        transactions=transactions,
        failed=sum(run.failed for run in runs),
        clients=runs[0].clients,
        duration_s=duration,
    )
