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


def select_value_in_session(function: str, arguments: Iterable[str], token: str) -> sql.Composed:
    """``select schema.function(...) from auth.validate_session(token => %(<token>)s)``: one value,
    computed for the session of a bearer token, in one statement.

    auth.validate_session runs first (the function scan comes before the select list that reads
    its row) and scopes the statement's transaction to the session's user, or raises
    invalid_session (28S02) so that the function never runs. ``token`` names the parameter that
    carries the token, apart from the function's own arguments.
    """
    return sql.SQL("select {} from auth.validate_session(token => {})").format(
        call(function, arguments), sql.Placeholder(token)
    )
