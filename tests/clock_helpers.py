"""A test cluster whose wall clock a test can step: libfaketime preloaded into its postmaster.

Every server process reads the offset from one file at each clock reading (FAKETIME_NO_CACHE), so
writing ``+2d`` or ``-3h`` to it steps the clock of every backend at once, as an NTP correction or a
resumed VM does; the monotonic clock (timeouts, latches) is left alone, as a real step leaves it.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import scratch_root
from spreadedge.cluster import Cluster

# Debian's libfaketime (scripts/bootstrap.sh installs it)
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Clock:
    """The offset of the test cluster's wall clock from the real one."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self.set("+0")

    def set(self, offset: str) -> None:
        """Step the server's clock to the real time plus ``offset`` (``+2d``, ``-90m``, ``+0``)."""
        found = re.fullmatch(r"([+-]\d+)([smhd]?)", offset)
        if found is None:
            raise ValueError(f"an offset is a signed whole number of s, m, h or d: {offset!r}")
        self.seconds = int(found[1]) * _UNITS[found[2]]
        self.offset_file.write_text(offset + "\n")

    def strike_minute_soon(self, lead: float = 2.0) -> None:
        """Step the clock forward by less than a minute, so that the server's next minute starts
        within ``lead`` to ``lead`` + 1 seconds. pg_cron reads the wall clock at least once a
        second and starts a minute's jobs as it begins: a test waits seconds for them, not up to
        a minute."""
        now = time.time() + self.seconds
        self.set(f"+{self.seconds + int((60 - lead - now % 60) % 60)}")

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@contextmanager
def clocked_cluster(make_cluster: Callable[..., Cluster]) -> Iterator[tuple[Cluster, Clock]]:
    """A cluster (not started) whose server reads its wall clock through libfaketime, and that
    clock at the real time; the offset file is removed on the way out (stop the cluster first)."""
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} is missing: run `make bootstrap` (Debian package libfaketime)")
    directory = Path(tempfile.mkdtemp(prefix="spreadedge-clock-", dir=scratch_root()))
    directory.chmod(0o755)  # the server's system user reads the offset file
    clock = Clock(directory / "offset")
    clock.offset_file.chmod(0o644)
    try:
        yield make_cluster(server_env=clock.env()), clock
    finally:
        clock.offset_file.unlink(missing_ok=True)
        directory.rmdir()
