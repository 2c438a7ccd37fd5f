"""The server's system user on a new machine, when several commands create it at once (a test
run's workers starting their clusters, two operators' first commands)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spreadedge import runas

as_root_only = pytest.mark.skipif(not runas.is_root(), reason="only root creates the server's system user")

# Each process waits for the same instant, creates the user with runas.ensure_user, and prints the
# uid it would give its directories to.
_CREATE = """
import pwd, sys, time
from spreadedge import runas
runas.RUN_USER = sys.argv[1]
while time.time() < float(sys.argv[2]):
    pass
runas.ensure_user()
print(pwd.getpwnam(runas.RUN_USER).pw_uid)
"""


@pytest.fixture
def new_user_name() -> Iterator[str]:
    """A system user name that does not exist yet; the user is deleted afterwards."""
    name = f"spreadedge-t{os.getpid()}"
    yield name
    subprocess.run(["userdel", name], capture_output=True, check=False)


@as_root_only
def test_commands_creating_the_system_user_at_once_all_see_the_uid_it_keeps(new_user_name):
    python_path = str(Path(runas.__file__).parents[1])
    start_at = time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE, new_user_name, str(start_at)],
            env={**os.environ, "PYTHONPATH": python_path},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(process.wait(timeout=60), *process.communicate()) for process in processes]

    # unlocked, two of six useradd created the user each, the later with another uid: the
    # earlier's directories then belonged to no user, or useradd failed with "already exists"
    kept = str(pwd.getpwnam(new_user_name).pw_uid)
    assert results == [(0, f"{kept}\n", "")] * 6
