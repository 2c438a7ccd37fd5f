"""Plain aligned text tables for the CLI."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Sequence[bool]) -> str:
    """Headers, a rule and the rows, columns padded to their widest cell."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, right_aligned, strict=True)
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])
