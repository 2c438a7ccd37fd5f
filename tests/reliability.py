"""The reliability suite's scale and its report (issue 8).

Tests marked ``reliability`` run bounded in CI and longer under ``make soak`` (SPREADEDGE_SOAK=1).
Each takes the ``tally`` fixture and counts what it did: operations by kind, faults injected,
invariant violations found, errors by SQLSTATE. At the end of the run the counts of all tests (and
all xdist workers) are printed as one table; under ``make soak`` a violation fails the run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

SOAK = os.environ.get("SPREADEDGE_SOAK") == "1"
_TALLY_FILE = "SPREADEDGE_TALLY_FILE"
_REPORT = pytest.StashKey[list[tuple[str, str, str]]]()


def scaled(ci: int, soak: int) -> int:
    """``ci`` in a normal run, ``soak`` under ``make soak``: durations, client counts, examples."""
    return soak if SOAK else ci


@dataclass
class Tally:
    """What one reliability test did, for the report."""

    test: str
    operations: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    violations: int = 0

    def op(self, kind: str, count: int = 1) -> None:
        self.operations[kind] += count

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    def error(self, error: psycopg.Error | str) -> None:
        """Count an error a caller saw, by SQLSTATE (or by the given label)."""
        key = error if isinstance(error, str) else (error.sqlstate or type(error).__name__)
        self.errors[key] += 1

    def check(self, conn: psycopg.Connection) -> list[tuple[str, object, str]]:
        """Run ops.check_invariants() on ``conn``, count its rows as violations and return them."""
        rows = conn.execute("select invariant, subject, detail from ops.check_invariants()").fetchall()
        self.violations += len(rows)
        self.op("invariant checks")
        return rows


def _tally_path() -> Path | None:
    value = os.environ.get(_TALLY_FILE)
    return Path(value) if value else None


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """A Tally for this test, appended to the run's report when the test ends."""
    counts = Tally(request.node.nodeid)
    yield counts
    path = _tally_path()
    if path is not None:
        line = {
            "test": counts.test,
            "operations": counts.operations,
            "faults": counts.faults,
            "errors": counts.errors,
            "violations": counts.violations,
        }
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: the reliability suite (issue 8); longer under make soak")
    if not hasattr(config, "workerinput") and _TALLY_FILE not in os.environ:
        # why the environment: xdist workers start after this and inherit it, so every process
        # appends to the one file the controller reads at the end
        handle, name = tempfile.mkstemp(prefix="spreadedge-tally-", suffix=".jsonl")
        os.close(handle)
        os.environ[_TALLY_FILE] = name


def report_rows(lines: list[dict]) -> list[tuple[str, str, str]]:
    """(test, what, count) rows of the report, then the totals."""
    rows: list[tuple[str, str, str]] = []
    totals: dict[str, Counter[str]] = {"operations": Counter(), "faults": Counter(), "errors": Counter()}
    violations = 0
    # why by test function: a parametrized test's cases are summed into one block of rows
    merged: dict[str, dict[str, Any]] = {}
    for line in lines:
        name = line["test"].split("::")[-1].split("[")[0]
        block = merged.setdefault(
            name, {"operations": Counter(), "faults": Counter(), "errors": Counter(), "violations": 0}
        )
        for section in ("operations", "faults", "errors"):
            block[section].update(line[section])
        block["violations"] += line["violations"]
    for name, block in sorted(merged.items()):
        for section in ("operations", "faults", "errors"):
            for kind, count in sorted(block[section].items()):
                label = {"operations": "op", "faults": "fault", "errors": "error"}[section]
                rows.append((name, f"{label}: {kind}", str(count)))
                totals[section][kind] += count
        rows.append((name, "violations", str(block["violations"])))
        violations += block["violations"]
    rows.append(("TOTAL", "operations done", str(sum(totals["operations"].values()))))
    rows.append(("TOTAL", "faults injected", str(sum(totals["faults"].values()))))
    rows.append(("TOTAL", "violations found", str(violations)))
    for sqlstate, count in sorted(totals["errors"].items()):
        rows.append(("TOTAL", f"errors {sqlstate}", str(count)))
    return rows


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    path = _tally_path()
    if hasattr(config, "workerinput") or path is None or not path.exists():
        return
    lines = [json.loads(text) for text in path.read_text().splitlines() if text]
    path.unlink()
    if not lines:
        return
    rows = report_rows(lines)
    config.stash[_REPORT] = rows
    if SOAK and ("TOTAL", "violations found", "0") not in rows:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(_REPORT, None)
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    terminalreporter.section("reliability report" + (" (soak)" if SOAK else ""))
    for test, what, count in rows:
        terminalreporter.line(f"{test:<{widths[0]}}  {what:<{widths[1]}}  {count:>{widths[2]}}")
