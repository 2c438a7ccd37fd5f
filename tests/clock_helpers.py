"""A test cluster whose wall clock a test can step: libfaketime preloaded into its postmaster.

Every server process reads the offset from one file at each clock reading (FAKETIME_NO_CACHE), so
writing ``+2d`` or ``-3h`` to it steps the clock of every backend at once, as an NTP correction or a
resumed VM does; the monotonic clock (timeouts, latches) is left alone, as a real step leaves it.
"""

from __future__ import annotations

from pathlib import Path

# Debian's libfaketime (scripts/bootstrap.sh installs it)
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class Clock:
    """The offset of the test cluster's wall clock from the real one."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self.set("+0")

    def set(self, offset: str) -> None:
        """Step the server's clock to the real time plus ``offset`` (``+2d``, ``-90m``, ``+0``)."""
        self.offset_file.write_text(offset + "\n")

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
