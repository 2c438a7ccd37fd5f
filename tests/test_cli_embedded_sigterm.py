"""Review of the day's changes outside the money paths: SIGTERM in a program that runs the CLI in
its own process, for real (the program is a subprocess; every wait is capped)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CAP = 60

# a program that runs a command in its own process, then is stopped by SIGTERM (its service
# manager's stop) while it does something else
EMBEDDING = """
import os, signal, time
from spreadedge.cli import main
{before}
main(["pnl"], standalone_mode=False)
print("command done", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(20)
print("went on after SIGTERM", flush=True)
"""


def run_embedding(db_url: str, before: str = "") -> tuple[int, str, str]:
    process = subprocess.run(
        [sys.executable, "-c", EMBEDDING.format(before=before)],
        env={**os.environ, "SPREADEDGE_PROJECT_DIR": str(PROJECT), "DATABASE_URL": db_url},
        capture_output=True, text=True, timeout=CAP, start_new_session=True,
    )  # fmt: skip
    return process.returncode, process.stdout, process.stderr


def test_a_program_that_ran_a_command_in_its_own_process_is_still_ended_by_sigterm(db_url: str) -> None:
    # before: the command's SIGTERM handler stayed installed after it returned, and the SIGTERM
    # raised a KeyboardInterrupt in the program's sleep (a traceback, status 1) instead of ending it
    status, out, err = run_embedding(db_url)
    assert (status, out.splitlines()[-1:], "Traceback" in err) == (-signal.SIGTERM, ["command done"], False)


def test_a_program_with_its_own_sigterm_handler_keeps_it_after_running_a_command(db_url: str) -> None:
    # the command neither replaces a handler it finds nor takes it away when it ends
    before = (
        "def on_term(signum, frame):\n"
        "    print('own handler', flush=True)\n"
        "    raise SystemExit(7)\n"
        "signal.signal(signal.SIGTERM, on_term)"
    )
    status, out, err = run_embedding(db_url, before)
    assert (status, out.splitlines()[-2:], "Traceback" in err) == (7, ["command done", "own handler"], False)
