"""The bench's SQL lives in bench/sql/*.sql, not in Python strings."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from psycopg import sql

from spreadedge.sqlfiles import split_statements

SQL_DIR = Path(__file__).resolve().parent / "sql"


@cache
def statements(name: str) -> tuple[sql.SQL, ...]:
    """The statements of bench/sql/<name>, leading comments dropped, to execute one by one.

    Placeholders (``%(name)s``) are left for psycopg; a literal ``%`` is written ``%%`` in
    statements that take parameters.
    """
    text = (SQL_DIR / name).read_text()
    # why SQL(): the text is a project file run as written; values only ever go in as parameters
    return tuple(sql.SQL(statement.text) for statement in split_statements(text))  # type: ignore[arg-type]


def statement(name: str) -> sql.SQL:
    """The one statement of bench/sql/<name>."""
    found = statements(name)
    if len(found) != 1:
        raise ValueError(f"bench/sql/{name} holds {len(found)} statements, expected one")
    return found[0]
