"""PostgreSQL refuses to run as root: when we are root, its programs run as a system user.

Not root: every helper here is a no-op or runs the command as it is, as the current user.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

# The unprivileged system user that runs initdb, pg_ctl and postgres for root.
RUN_USER = "spreadedge"
# Its home (never created): where embedded clusters live when it cannot reach the project.
RUN_USER_HOME = Path("/var/lib/spreadedge")


def is_root() -> bool:
    return os.geteuid() == 0


def command(args: list[str]) -> list[str]:
    """``args`` as a command line that runs as RUN_USER when we are root."""
    return ["runuser", "-u", RUN_USER, "--", *args] if is_root() else args


def ensure_user() -> None:
    """Create RUN_USER unless it exists (root only); CalledProcessError when useradd fails."""
    if not is_root():
        return
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--home-dir", str(RUN_USER_HOME)]
        subprocess.run(
            [*useradd, "--shell", "/usr/sbin/nologin", RUN_USER], check=True, capture_output=True, text=True
        )


def can_reach(path: Path) -> bool:
    """Whether the server's user can traverse every directory down to ``path``."""
    if not is_root():
        return True  # the server runs as we do
    probe = command(["test", "-x", str(path)])
    return subprocess.run(probe, cwd="/", stdin=subprocess.DEVNULL, check=False).returncode == 0


def can_read(path: Path) -> bool:
    """Whether the server's user can read the file ``path`` (and reach it)."""
    if not is_root():
        return True
    probe = command(["test", "-r", str(path)])
    return subprocess.run(probe, cwd="/", stdin=subprocess.DEVNULL, check=False).returncode == 0


def give(path: Path) -> None:
    """Make RUN_USER the owner of ``path`` (root only), creating RUN_USER on a new machine."""
    if is_root():
        ensure_user()
        user = pwd.getpwnam(RUN_USER)
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def make_private_dir(path: Path) -> None:
    """Create ``path`` if needed, mode 0700, owned by RUN_USER when we are root."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    give(path)
