"""The cron schedule and user of ``spreadedge backup schedule``, checked before a cron.d line is written.

cron skips a line it cannot parse (it only logs "bad minute"), so a schedule such as
``99 * * * *`` or ``foo bar baz qux quux`` would leave the backups silently unscheduled: every
field is checked against the ranges cron accepts (minute 0-59, hour 0-23, day 1-31, month 1-12
or jan-dec, weekday 0-7 or sun-sat; ``*``, ``a-b``, ``/step`` and lists).
"""

from __future__ import annotations

import re

from spreadedge.ops import OpsError

MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, the names that stand for numbers (from the lowest)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"(?P<range>\*|(?P<low>[0-9]+|[a-z]{3})(-(?P<high>[0-9]+|[a-z]{3}))?)(/(?P<step>[0-9]+))?")
# a system user name as useradd takes it: one word, so it cannot spill into the command
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?")


def check_cron(schedule: str) -> str:
    """The schedule, stripped; OpsError naming the field when cron would not run it."""
    text = schedule.strip()
    if text.lower() in MACROS:
        return text
    fields = text.split(" ")
    if len(fields) != len(_FIELDS):
        raise OpsError(f'--cron must be five cron fields like "0 3 * * 0" or @daily, got {schedule!r}')
    for field, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for item in field.lower().split(","):
            if not _valid_item(item, low, high, names):
                raise OpsError(
                    f"--cron {schedule!r}: {name} {field!r} is not valid: "
                    f"use *, numbers {low}-{high}{' or names' if names else ''}, ranges a-b, steps /n, lists"
                )
    return text


def _valid_item(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    match = _ITEM.fullmatch(item)
    if match is None:
        return False
    if match["step"] is not None and int(match["step"]) == 0:
        return False
    if match["range"] == "*":
        return True
    values = []
    for part in (match["low"], match["high"]):
        if part is None:
            continue
        if part.isdigit():
            values.append(int(part))
        elif part in names:
            values.append(names.index(part) + low)
        else:
            return False
    return all(low <= value <= high for value in values) and values == sorted(values)


def check_user(user: str) -> str:
    """The user column of the cron.d line; OpsError unless it is one user name."""
    if not _USER.fullmatch(user):
        raise OpsError(f"--user must be a system user name (letters, digits, _ . -), got {user!r}")
    return user
