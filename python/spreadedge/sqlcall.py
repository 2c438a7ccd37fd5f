"""Calls of the SQL API composed with psycopg ``sql``: ``schema.function(name => %(name)s, ...)``.

Every caller of a stored function (CLI, demo, security, REST API, managers) composes it here, with
named notation as PRODUCT.md fixes the argument names, and the values as bind parameters only.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql


def call(function: str, arguments: Iterable[str]) -> sql.Composed:
    """``schema.function(a => %(a)s, ...)`` for the given argument names."""
    schema, name = function.split(".")
    return sql.SQL("{}({})").format(
        sql.Identifier(schema, name),
        sql.SQL(", ").join(
            sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in arguments
        ),
    )


def select_value(function: str, arguments: Iterable[str]) -> sql.Composed:
    """``select schema.function(...)``: one value (a scalar or a whole composite)."""
    return sql.SQL("select {}").format(call(function, arguments))


def select_rows(function: str, arguments: Iterable[str]) -> sql.Composed:
    """``select * from schema.function(...)``: the rows of a set-returning or OUT-parameter function."""
    return sql.SQL("select * from {}").format(call(function, arguments))
