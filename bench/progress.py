"""Progress on stderr: click's bar on a terminal, a line every few seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import click


class Advance(Protocol):
    def __call__(self, done: int) -> None: ...


@contextmanager
def progress(total: int, label: str, *, every_s: float = 10.0) -> Iterator[Advance]:
    """A function to call with each amount of work done, shown as progress towards ``total``."""
    if sys.stderr.isatty():
        with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
            yield bar.update
        return
    started = last = time.monotonic()
    count = 0

    def advance(done: int) -> None:
        nonlocal count, last
        count += done
        now = time.monotonic()
        if now - last >= every_s or count >= total:
            last = now
            rate = count / max(now - started, 1e-9)
            click.echo(f"    {label}: {count:,} of {total:,} ({count / total:.0%}), {rate:,.0f}/s", err=True)

    yield advance
