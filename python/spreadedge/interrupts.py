"""SIGTERM as an interrupt of a CLI command, like Ctrl-C's KeyboardInterrupt.

why: with Python's default SIGTERM a command stopped by a service manager, ``kill``, ``timeout`` or
``docker stop`` died at once, running none of its ``with`` and ``finally`` blocks: ``backup
logical`` left its ``.partial`` dump, its pg_dump running on as an orphan and its run 'running' in
ops.backup_runs, a restore of a compressed dump its decompressed copy (as large as the database)
next to the dump, ``migrate`` its rendered migrations in the temporary directory, ``ingest`` no
rejects file for the batches it had committed, and none of them said a word. Raised as a
KeyboardInterrupt, SIGTERM unwinds the command as Ctrl-C does (psycopg cancels the statement in
progress, the connections close, their transactions roll back, the files and programs of the
command are removed and stopped), and the command then ends by SIGTERM itself (status 143).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM stopped the command (a KeyboardInterrupt, so that everything Ctrl-C unwinds it unwinds)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # why a second one kills at once: the first one's unwinding may wait (psycopg's cancel of a
    # statement the server does not answer takes 5 to 10 s), and whoever sends another wants it over
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def terminate_as_interrupt() -> Callable[[], None] | None:
    """Make SIGTERM raise :class:`Terminated` in the main thread, unless someone else handles it
    (a program embedding the CLI, a test runner): only Python's default, which kills at once, is
    replaced. Commands with a graceful stop of their own (``serve``, ``notify worker``) install
    their handler over this one. Returns what gives SIGTERM its default back once the command has
    ended (None when nothing was installed).

    why give it back: a Python program that runs a command in its own process (``main(...,
    standalone_mode=False)``, click's CliRunner) kept the handler after the command returned, so a
    SIGTERM to the program later (its service manager's stop) raised a KeyboardInterrupt in
    whatever it was doing instead of ending it
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _on_sigterm)

    def restore() -> None:
        # why whatever handler is there now: serve's stop (or the default a first SIGTERM left)
        # belongs to the command that ended too
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


# Seconds a program the command started is given to end after SIGTERM, before SIGKILL.
CHILD_PATIENCE = 5.0


def stop_children(*processes: subprocess.Popen[Any] | None) -> None:
    """End the programs a command started and is leaving on an error or an interrupt: SIGTERM,
    then SIGKILL after CHILD_PATIENCE seconds; each waited for, so none is left a zombie or orphan.

    why: only Ctrl-C at a terminal reaches the programs too (it signals the whole foreground
    group); a SIGTERM or SIGINT sent to the command alone (kill PID, a service manager stopping its
    main process, ``timeout``) left pg_dump running on as an orphan, writing into a dump file
    already deleted and holding its snapshot (and its locks) on the database until it finished.
    """
    for process in processes:
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.terminate()
    for process in processes:
        if process is None:
            continue
        try:
            process.wait(timeout=CHILD_PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
