"""Operations: tuning, partitions, cleanup, backups and restores, health (``spreadedge tune|…``).

Each module is a thin driver: the decisions are SQL functions of the ``ops`` schema (or pgBackRest
and pg_dump), and the modules call them, run the external programs and report progress.
"""

from __future__ import annotations


class OpsError(Exception):
    """An operation cannot be done as asked; the message says why (and never holds a secret)."""
