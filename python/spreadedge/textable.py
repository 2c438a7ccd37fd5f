"""Plain aligned text tables for the CLI."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal

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
