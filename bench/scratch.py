"""A private, throw-away cluster for one bench run: a temp home, a free port, migrated.

Never the embedded default cluster and never port 5432: the bench writes millions of rows and
toggles triggers, which must not happen to a database anyone uses.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

HOME_PREFIX = "spreadedge-bench-"
PROJECT_DIR = Path(__file__).resolve().parent.parent
# The PostgreSQL server on this port is someone else's; the bench never uses it.
FORBIDDEN_PORT = 5432


def user_password() -> str:
    """A random password for a bench user that every password policy accepts.

    192 random bits (token_urlsafe) and then one character of each of the four classes: a bare
    token_urlsafe(24) now and then drew no digit and no '-' or '_' (about 1 in 400), which the
    default policy (3 of 4 classes) refused, and the bench stopped with weak_password (22S11).
    """
    return secrets.token_urlsafe(24) + "aA0-"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (never 5432)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != FORBIDDEN_PORT:
            return port


def new_cluster() -> Cluster:
    """A cluster object in a fresh temp home (nothing is created on disk but the directory).

    mkdtemp makes the parent 0700; it is opened to 0755 so that, when the bench runs as root,
    the server's system user can reach the home directly.
    """
    parent = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
    parent.chmod(0o755)
    return Cluster(parent / "home", free_port())


def destroy(cluster: Cluster) -> None:
    """Stop the server and delete everything of the cluster, its temp parent included."""
    try:
        cluster.destroy()
    finally:
        if cluster.home.parent.name.startswith(HOME_PREFIX):
            shutil.rmtree(cluster.home.parent, ignore_errors=True)


def destroy_kept(home: Path) -> None:
    """Destroy a cluster an earlier ``--keep`` run left behind, given its home."""
    home = home.resolve()
    if not home.parent.name.startswith(HOME_PREFIX):
        raise ValueError(f"{home} is not the home of a bench cluster (its parent is not {HOME_PREFIX}*)")
    # The port only matters for starting; stopping and deleting go by the data directory.
    destroy(Cluster(home, 0))


@contextlib.contextmanager
def scratch_cluster(*, keep: bool, echo: Callable[[str], None]) -> Iterator[Cluster]:
    """Start and migrate a new cluster; stop and delete it on the way out unless ``keep``.

    Without ``keep`` the cluster is deleted on every way out: success, an error, Ctrl-C, or
    SIGTERM (turned into SystemExit by the caller). With ``keep`` it is left running, also after
    an error, so it can be inspected.
    """
    cluster = new_cluster()
    try:
        echo(f"starting a scratch cluster on port {cluster.port} in {cluster.home}")
        cluster.start()
        # Default render settings, not the deployment's: the bench measures the code, and its
        # history needs the default partitions (3 months back, 4 ahead).
        migrate(
            cluster.conninfo(), Settings(project_dir=PROJECT_DIR), echo=lambda line: echo(f"migrate: {line}")
        )
        yield cluster
    finally:
        if keep and cluster.status().running:
            echo(f"kept the cluster: psql '{cluster.url()}'")
            echo(f"delete it with: .venv/bin/python -m bench --destroy {cluster.home}")
        else:
            echo("stopping and deleting the scratch cluster")
            destroy(cluster)
