"""PostgreSQL refuses to run as root: when we are root, its programs run as a system user.

Not root: every helper here is a no-op or runs the command as it is, as the current user.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import subprocess
from pathlib import Path

# The unprivileged system user that runs initdb, pg_ctl and postgres for root.
RUN_USER = "spreadedge"
# Its home (never created): where embedded clusters live when it cannot reach the project.
RUN_USER_HOME = Path("/var/lib/spreadedge")
# Held while RUN_USER is looked up and created (root only; /run/lock is a memory file system).
USER_LOCK = Path("/run/lock/spreadedge-useradd.lock")


def is_root() -> bool:
    return os.geteuid() == 0


def command(args: list[str]) -> list[str]:
    """``args`` as a command line that runs as RUN_USER when we are root."""
    return ["runuser", "-u", RUN_USER, "--", *args] if is_root() else args


def _user_exists() -> bool:
    try:
        pwd.getpwnam(RUN_USER)
    except KeyError:
        return False
    return True


def ensure_user() -> None:
    """Create RUN_USER unless it exists (root only); CalledProcessError when useradd fails.

    Commands that start clusters at once on a new machine (a test run's workers, two operators'
    commands) create the user one at a time, under an exclusive lock.
    """
    if not is_root() or _user_exists():
        return
    # why the lock: two useradd run at once on a new machine each created the user, the second
    # with another uid that replaced the first in /etc/passwd; the directories the first command
    # had already given to its uid were then closed to the server ("could not access directory
    # ...: Permission denied", "could not look up effective user ID"), or useradd said the user
    # already exists
    USER_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _user_exists():
            return
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
