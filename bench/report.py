"""The results table (measured, baseline, ratio, goal side by side) and its JSON twin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Goal:
    """A goal from PRODUCT.md: a minimum ratio to the baseline, or a maximum or minimum of the value."""

    kind: Literal["min_ratio", "max_value", "min_value"]
    limit: float

    def __str__(self) -> str:
        return f"<= {self.limit:g}" if self.kind == "max_value" else f">= {self.limit:g}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a measured value, optionally against a baseline and a goal."""

    key: str
    label: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    goal: Goal | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.measured / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None when there is no goal."""
        if self.goal is None:
            return None
        if self.goal.kind == "min_ratio":
            return self.ratio is not None and self.ratio >= self.goal.limit
        if self.goal.kind == "min_value":
            return self.measured >= self.goal.limit
        return self.measured <= self.goal.limit

    @property
    def verdict(self) -> str:
        return {None: "", True: "ok", False: "MISSED"}[self.met]

    def as_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "key": self.key,
            "label": self.label,
            "measured": round(self.measured, 3),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 3),
            "baseline_label": self.baseline_label or None,
            "ratio": None if ratio is None else round(ratio, 3),
            "goal": None if self.goal is None else {"kind": self.goal.kind, "limit": self.goal.limit},
            "met": self.met,
            "note": self.note or None,
        }


def _number(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f} ms"
    return f"{value:,.0f} {unit}"


def _goal_text(row: Row) -> str:
    if row.goal is None:
        return ""
    if row.goal.kind in ("max_value", "min_value"):
        return f"{row.goal} {row.unit}"
    return f"ratio {row.goal}"


def table(rows: list[Row]) -> str:
    """The rows as an aligned plain-text table, notes numbered below it."""
    header = ("measurement", "measured", "baseline", "ratio", "goal", "result")
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for row in rows:
        label = row.label
        if row.note:
            notes.append(row.note)
            label += f" [{len(notes)}]"
        baseline = ""
        if row.baseline is not None:
            baseline = _number(row.baseline, row.unit) + (
                f" {row.baseline_label}" if row.baseline_label else ""
            )
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append((label, _number(row.measured, row.unit), baseline, ratio, _goal_text(row), row.verdict))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    right = {1, 3}  # numbers align right

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [render(header), "  ".join("-" * width for width in widths)]
    out += [render(line) for line in lines]
    out += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
    return "\n".join(out)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the results document (pretty-printed, keys in the order given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
