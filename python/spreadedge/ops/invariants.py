"""``spreadedge check``: the violations ``ops.check_invariants()`` finds, as typed rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from spreadedge.sqlcall import select_rows


@dataclass(frozen=True)
class Violation:
    """One row of ops.check_invariants(): which invariant, what it is about, what differs."""

    invariant: str
    subject: dict[str, Any]
    detail: str


def check(conn: psycopg.Connection[Any]) -> list[Violation]:
    """Every violation, ordered by invariant and subject; empty when the database is sound."""
    with conn.cursor(row_factory=class_row(Violation)) as cur:
        rows = cur.execute(select_rows("ops.check_invariants", [])).fetchall()
    return sorted(rows, key=lambda row: (row.invariant, json.dumps(row.subject, sort_keys=True)))
