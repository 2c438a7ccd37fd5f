"""A cluster whose disks can be filled: its data directory on a small loop-mounted ext4 image and
its pg_wal on a small tmpfs, mounted for a test module (root only: such modules skip elsewhere).

The ext4 image keeps 40 % of its blocks for root, as ext4 keeps 5 % by default: the server, running
as another user, gets "No space left on device" when the rest is used. A disk is filled with a
ballast file written as the server's user until the file system refuses more, and emptied by
deleting it. Everything is unmounted when the module's cluster ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from conftest import free_port, scratch_root
from spreadedge import runas
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings

requires_root = pytest.mark.skipif(not runas.is_root(), reason="mounting the test's file systems needs root")

DATA_DISK_MB = 320  # the ext4 image of the cluster's home; 40 % of it kept for root
WAL_DISK_MB = 256  # the tmpfs of pg_wal (what a migrate writes before a checkpoint recycles it)


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _unmount(mount: Path) -> None:
    """Unmount ``mount``; lazily when it is still busy (a process of a failed test in it)."""
    if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@dataclass
class Disks:
    """The module's cluster, the mount points of its data directory's and its pg_wal's disks, and
    its migrated, seeded database."""

    cluster: Cluster
    data: Path
    wal: Path
    url: str
    filled: list[Path] = field(default_factory=list)

    def fill(self, mount: Path) -> None:
        """Write a ballast file on ``mount`` as the server's user until the file system refuses more."""
        ballast_dir = mount / "ballast"
        for block in ("1M", "4k"):  # the last MB, a page at a time
            subprocess.run(
                runas.command(["dd", "if=/dev/zero", f"of={ballast_dir / block}", f"bs={block}"]),
                capture_output=True,
                check=False,  # dd ends with "No space left on device", as it must
            )
        self.filled.append(mount)
        assert shutil.disk_usage(mount).free < 64 * 1024

    def free(self) -> None:
        """Delete every ballast file."""
        while self.filled:
            for ballast in (self.filled.pop() / "ballast").iterdir():
                ballast.unlink()

    @contextlib.contextmanager
    def full(self, mount: Path) -> Iterator[None]:
        self.fill(mount)
        try:
            yield
        finally:
            self.free()


def _mount(kind: list[str], mount: Path) -> None:
    result = subprocess.run(["mount", *kind, str(mount)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount the test's file systems here: {result.stderr.strip()}")
    ballast = mount / "ballast"
    ballast.mkdir()
    runas.give(ballast)


@contextlib.contextmanager
def disk_cluster(settings: Settings, seed: Callable[[psycopg.Connection], object]) -> Iterator[Disks]:
    """A started cluster on disks of its own (see the module), migrated, seeded by ``seed`` and
    checkpointed; destroyed and its disks unmounted on the way out."""
    scratch = Path(tempfile.mkdtemp(prefix="spreadedge-disk-full-", dir=scratch_root()))
    scratch.chmod(0o755)
    data, wal, image = scratch / "data", scratch / "wal", scratch / "data.img"
    mounted: list[Path] = []
    cluster: Cluster | None = None
    try:
        _run("truncate", "-s", f"{DATA_DISK_MB}M", str(image))
        _run("mkfs.ext4", "-q", "-m", "40", str(image))
        for mount, kind in (
            (data, ["-o", "loop", str(image)]),
            (wal, ["-t", "tmpfs", "-o", f"size={WAL_DISK_MB}m,mode=0755", "tmpfs"]),
        ):
            mount.mkdir()
            _mount(kind, mount)
            mounted.append(mount)
        cluster = Cluster(data / "home", free_port())
        cluster.init()
        # pg_wal on a disk of its own, as the server's user owns it
        shutil.copytree(cluster.data_dir / "pg_wal", wal / "pg_wal", symlinks=True)
        _run("chown", "-R", f"{runas.RUN_USER}:", str(wal / "pg_wal"))
        shutil.rmtree(cluster.data_dir / "pg_wal")
        (cluster.data_dir / "pg_wal").symlink_to(wal / "pg_wal")
        cluster.start()
        migrate(cluster.url(), settings, echo=lambda line: None)
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            seed(conn)
            conn.execute("checkpoint")
        yield Disks(cluster, data, wal, cluster.url())
    finally:
        try:
            if cluster is not None:
                for ballast_dir in (m / "ballast" for m in mounted):
                    for ballast in ballast_dir.iterdir():
                        ballast.unlink()
                cluster.destroy()
        finally:
            for mount in reversed(mounted):
                _unmount(mount)
            shutil.rmtree(scratch, ignore_errors=True)
