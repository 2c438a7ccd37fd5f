"""Plain aligned text tables for the CLI."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

# C0 and C1 control characters, and the bidirectional embeddings, overrides and isolates, which
# reorder what follows them on the line
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str) -> str:
    """``text`` as a table shows it: each control or bidirectional-override character written as an
    escape (a line break as ``\\n``, ESC as ``\\x1b``, U+202E as ``\\u202e``); idempotent.

    why: a value someone else chose (an API key's label, a kill switch's reason) holding a line
    break split its row in two, the second line reading as a row of its own, and one holding an
    escape sequence drove the terminal of whoever listed it (cleared the screen, retitled the
    window, hid the rows before it)
    """
    return _UNSAFE.sub(lambda m: _ESCAPES.get(m.group(), _escape(m.group())), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def width(text: str) -> int:
    """The columns ``text`` takes on a terminal, as ``shown`` writes it: two for a wide (East Asian
    wide or full-width) character, none for a combining mark or a format character, one for any other.

    why not len(): a strategy or user name in Chinese or Japanese (or with an emoji) is twice as
    wide as it is long, and one with a combining accent (q̃) narrower, so every column after it
    was shifted against the header and the other rows
    """
    return sum(_char_width(char) for char in shown(text))


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def pad(text: str, columns: int, *, right: bool = False) -> str:
    """``text`` (as ``shown``) padded with spaces to ``columns`` terminal columns, on the left when
    ``right``."""
    text = shown(text)
    fill = " " * max(0, columns - width(text))
    return fill + text if right else text + fill


def decimal_text(value: Decimal) -> str:
    """A decimal with every digit it has and no trailing zeros of its fraction (``1.50`` is ``1.5``).

    why not ``f"{value.normalize():f}"``: normalize() rounds to the context's 28 significant
    digits, so a volume of 12345678901234.123456789012345 showed as 12345678901234.12345678901234
    """
    text = format(value, "f")
    if "." in text and value.is_finite():
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _json_integer(text: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal when it has more digits than int() reads.

    why: Python's int() refuses a numeral of more than 4,300 digits (ValueError), and a numeric
    that long is a valid threshold or value (``1e5000`` is finite); a Decimal keeps every digit.
    """
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


def load_exact_json(text: str | bytes) -> Any:
    """JSON (a json or jsonb value as PostgreSQL writes it) with its numbers exact: a fraction as
    Decimal, never float, and an integer as int, or Decimal when int() cannot read it.

    why: json.loads, psycopg's loader for json and jsonb, reads 0.10 as 0.1,
    12345678901234567890.5 as 1.2345678901234567e+19 and 1e-30 in exponent form, and fails on an
    integer of more than 4,300 digits (a jsonb 1e5000), so a table showing such a value showed
    another number, or the command failed with a traceback
    """
    return json.loads(text, parse_float=Decimal, parse_int=_json_integer)


def exact_json(
    value: Any, *, indent: int | None = None, sort_keys: bool = False, ensure_ascii: bool = True
) -> str:
    """JSON text as ``json.dumps`` writes it, but with ``Decimal`` numbers written exactly.

    The numbers are PostgreSQL numerics (``50000.000000000000000001``, read by
    ``load_exact_json``); a float would round them, so they are written with every digit, never
    in exponent form.
    """

    def encode(item: Any, depth: int) -> str:
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise ValueError(f"JSON has no number {item}")
            return format(item, "f")
        if isinstance(item, dict):
            pairs = sorted(item.items()) if sort_keys else list(item.items())
            members = [
                f"{json.dumps(str(key), ensure_ascii=ensure_ascii)}: {encode(member, depth + 1)}"
                for key, member in pairs
            ]
            return wrap("{", members, "}", depth)
        if isinstance(item, list | tuple):
            return wrap("[", [encode(member, depth + 1) for member in item], "]", depth)
        return json.dumps(item, ensure_ascii=ensure_ascii)

    def wrap(opening: str, members: list[str], closing: str, depth: int) -> str:
        if not members:
            return opening + closing
        if indent is None:
            return opening + ", ".join(members) + closing
        inner, outer = "\n" + " " * (indent * (depth + 1)), "\n" + " " * (indent * depth)
        return opening + inner + ("," + inner).join(members) + outer + closing

    return encode(value, 0)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    """Headers, a rule and the rows, columns padded to their widest cell (in terminal columns)."""
    widths = [
        max(width(h), *(width(row[i]) for row in rows)) if rows else width(h) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            pad(v, w, right=right) for v, w, right in zip(values, widths, right_aligned, strict=True)
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])
