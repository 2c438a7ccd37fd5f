"""Shared fixtures: one embedded cluster per test session, always stopped and deleted at the end."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from spreadedge.cluster import Cluster


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Free space the memory file system must have for the test clusters to live there.
_SCRATCH_MIN_FREE = 4 * 1024**3


def scratch_root() -> str | None:
    """Where the test clusters live: ``SPREADEDGE_TEST_TMPDIR`` if set, else /dev/shm when it is a
    memory file system with room, else the system's temporary directory (None).

    why: every test clones the migrated template (about 1,240 relation files) and drops it; on an
    ext4 disk mounted with ``discard`` a clone took about 1 s even with fsync off, on tmpfs 0.07 s.
    A test cluster holds nothing worth keeping past the session.
    """
    chosen = os.environ.get("SPREADEDGE_TEST_TMPDIR")
    if chosen:
        return chosen
    shm = "/dev/shm"
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= _SCRATCH_MIN_FREE
    return shm if roomy and os.access(shm, os.W_OK | os.X_OK) else None


def new_home(*, private_parent: bool = False) -> Path:
    """A fresh directory for a cluster's home, under ``scratch_root()``.

    mkdtemp makes the parent 0700; unless ``private_parent`` it is opened to 0755 so the
    server's system user (when the tests run as root) can reach the home directly.
    """
    parent = Path(tempfile.mkdtemp(prefix="spreadedge-test-", dir=scratch_root()))
    _homes.append(parent)
    if not private_parent:
        parent.chmod(0o755)
    return parent / "home"


# why: a test that takes a home for a command of its own (a restore's target, a backup's work
# directory, an installed package's project) and no cluster left its directory, sometimes with a
# master key in it, in /dev/shm after the run; every one is removed when the process ends, after
# the clusters are stopped (atexit runs the later registration first)
_homes: list[Path] = []
atexit.register(lambda: [shutil.rmtree(parent, ignore_errors=True) for parent in _homes])


def _destroy_all(clusters: list[Cluster]) -> None:
    """Stop and delete every cluster and its temp directory; safe to call more than once."""
    while clusters:
        cluster = clusters.pop()
        try:
            cluster.destroy()
        finally:
            shutil.rmtree(cluster.home.parent, ignore_errors=True)


_clusters: list[Cluster] = []
atexit.register(_destroy_all, _clusters)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds fixtures, so the finalizers stop the servers


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

# why: a run started in the background by a shell (`make test &`, nohup, a CI runner's job) has
# SIGINT ignored, which every process it starts inherits, so the tests that press Ctrl-C on a
# command (SIGINT to its process group) saw it ignored and the command wait for ever; the tests
# are about a command run from a terminal, where SIGINT has its default action
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def make_cluster() -> Iterator[Callable[..., Cluster]]:
    """A factory of extra clusters (not started); all are deleted at the end of the session."""

    def make(
        *, private_parent: bool = False, port: int | None = None, server_env: dict[str, str] | None = None
    ) -> Cluster:
        cluster = Cluster(new_home(private_parent=private_parent), port or free_port(), server_env)
        _clusters.append(cluster)
        return cluster

    yield make
    _destroy_all(_clusters)


@pytest.fixture(scope="session")
def pg_cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    """The session's running embedded cluster, with its ``spreadedge`` database."""
    cluster = make_cluster()
    cluster.start()
    return cluster  # make_cluster's teardown (or atexit) stops and deletes it


pytest_plugins = ["db_fixtures", "api_fixtures", "notify_servers", "reliability", "pgbouncer_helpers"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]
