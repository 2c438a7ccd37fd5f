"""Logical backups with pg_dump (custom format) and their restore with pg_restore.

PostgreSQL 15's pg_dump compresses the custom format with gzip only, so ``gz`` dumps are
compressed by pg_dump itself and ``bz2``, ``lz4`` and ``zst`` dumps are written uncompressed by
pg_dump through ``bzip2``, ``lz4`` or ``zstd`` (``.dump.bz2``, ``.dump.lz4``, ``.dump.zst``).
Restoring decompresses such a file next to itself first, because pg_restore needs to read the
table of contents before the data.

A password in the connection string goes to pg_dump and pg_restore through PGPASSWORD, and the SSL
key's passphrase (sslpassword) through a private service file, never on their command lines. A
dump holds password and token hashes (auth.users, auth.sessions), so it is created mode 0600, in
a directory created 0700 when it did not exist, whatever the umask.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from spreadedge import interrupts, pgclients
from spreadedge.cluster import PG_BINDIR
from spreadedge.ops import OpsError

MODES = {"schema": ["--schema-only"], "data": ["--data-only"], "full": []}
# compressor (to compress, to decompress) per compress type; gz is pg_dump's own
COMPRESSORS = {
    "bz2": (["bzip2", "-c"], ["bzip2", "-dc"]),
    "lz4": (["lz4", "-q", "-c"], ["lz4", "-q", "-dc"]),
    "zst": (["zstd", "-q", "-c", "-T0"], ["zstd", "-q", "-dc"]),
}
SUFFIXES = {"gz": ".dump", "bz2": ".dump.bz2", "lz4": ".dump.lz4", "zst": ".dump.zst"}
# the table-of-contents entries of pg_cron, which exists only in the one database it serves
_CRON_ENTRY = re.compile(r"\bpg_cron\b| cron (job|job_run_details|jobid_seq|runid_seq)\b")
# a table-of-contents entry of rows, not of the schema: "5676; 0 17848 TABLE DATA audit log_default
# spreadedge_owner" (a data-only dump holds no other kind)
_DATA_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET|BLOBS|BLOB|LARGE OBJECT) ")
# the session setting a data-only restore by a role that is not a superuser fires no trigger with
# (see restore)
REPLICA_OPTION = "-c session_replication_role=replica"
# The entry of the private service file that carries the SSL key's passphrase (see _client)
_SERVICE = "spreadedge"


def _tool(compress_type: str, decompress: bool = False) -> list[str]:
    """The command that compresses (or decompresses) a dump of ``compress_type``; OpsError when
    the program is not installed (before anything runs, instead of a crash with pg_dump half done)."""
    command = COMPRESSORS[compress_type][1 if decompress else 0]
    if shutil.which(command[0]) is None:
        hint = "install it to restore this dump" if decompress else "install it, or use --compress-type gz"
        raise OpsError(f"{command[0]} is not installed (needed for {compress_type} dumps): {hint}")
    return command


@contextmanager
def _client(conninfo: str, program: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The connection string for ``program`` (pg_dump, pg_restore) without its secrets, and an
    environment carrying them: the password in PGPASSWORD, the SSL key's passphrase
    (``sslpassword``, which has no variable) in a private service file (PGSERVICEFILE) that lives
    while the block runs.

    why: the passphrase stayed in the connection string, so pg_dump's command line (``ps``,
    /proc/PID/cmdline, readable by every user of the machine) showed it. OpsError when the URL
    holds what the system's libpq these programs load cannot honour (see pgclients).
    """
    params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}
    refusal = pgclients.unsupported(params, program)
    if refusal is not None:
        raise OpsError(refusal)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    passphrase = params.pop("sslpassword", None)
    if passphrase is None:
        yield make_conninfo(**params), env
        return
    if "service" in params:
        raise OpsError(
            f"DATABASE_URL holds both service and sslpassword, and {program} could be given the "
            "passphrase only on its command line, where every user of this machine can read it: "
            "put sslpassword in the service's entry of your pg_service.conf instead"
        )
    # why these refused: a service file's value ends at the line's end, and its trailing blanks
    # are dropped
    if passphrase != passphrase.rstrip() or "\n" in passphrase or "\r" in passphrase:
        raise OpsError(
            f"DATABASE_URL's sslpassword ends in a blank or holds a line break, which {program} "
            "cannot be given outside its command line (where every user of this machine could read it)"
        )
    with tempfile.TemporaryDirectory(prefix="spreadedge-client-") as private:  # mode 0700
        service_file = Path(private) / "pg_service.conf"
        with _private_file(service_file) as out:
            out.write(f"[{_SERVICE}]\nsslpassword={passphrase}\n".encode())
        env["PGSERVICEFILE"] = str(service_file)
        yield make_conninfo(**params, service=_SERVICE), env


def dump_path(
    directory: Path, dbname: str, mode: str, compress_type: str, now: datetime | None = None
) -> Path:
    """``DIR/<database>-<mode>-<UTC time>.dump[.bz2|.lz4|.zst]``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"{dbname}-{mode}-{stamp}{SUFFIXES[compress_type]}"


def dump(
    conninfo: str, path: Path, mode: str, compress_type: str, on_table: Callable[[str], None] | None = None
) -> int:
    """Write a custom-format dump of the database to ``path``; its size in bytes.

    ``on_table`` receives each table pg_dump starts dumping (for progress).
    """
    if mode not in MODES:
        raise OpsError(f"dump mode must be one of {', '.join(MODES)}, got {mode!r}")
    if compress_type not in SUFFIXES:
        raise OpsError(f"compress type must be one of {', '.join(SUFFIXES)}, got {compress_type!r}")
    compress_command = None if compress_type == "gz" else _tool(compress_type)
    with _client(conninfo, "pg_dump") as (dbname, env):
        return _dump(dbname, env, path, mode, compress_type, compress_command, on_table)


def _dump(
    dbname: str,
    env: dict[str, str],
    path: Path,
    mode: str,
    compress_type: str,
    compress_command: list[str] | None,
    on_table: Callable[[str], None] | None,
) -> int:
    """pg_dump of ``dbname`` (with ``env``) into ``path``, as :func:`dump` says."""
    # why: a directory that cannot be made or written (a path through a file, no permission, a
    # read-only file system) ended the command with a Python traceback
    try:
        _make_private_dirs(path.parent)
    except OSError as exc:
        raise OpsError(f"cannot create the dump directory {path.parent}: {exc.strerror}") from None
    level = "6" if compress_type == "gz" else "0"
    command = [
        str(PG_BINDIR / "pg_dump"),
        "--format=custom",
        f"--compress={level}",
        "--verbose",
        *MODES[mode],
    ]
    # why no overwrite: dump names have a one-second stamp, so two dumps of one mode in one second
    # (a cron entry and an operator) got the same name; the second unlinked the first's partial
    # file and replaced its finished dump, and ops.backup_runs recorded two runs of one file
    if path.exists():
        raise OpsError(f"{path} exists already: a dump is never overwritten (run it again in a second)")
    partial = path.with_name(path.name + ".partial")
    try:
        out_file = _private_file(partial)
    except FileExistsError:
        raise OpsError(f"{partial} exists: another dump of that name is being written") from None
    except OSError as exc:
        raise OpsError(f"cannot write the dump in {path.parent}: {exc.strerror}") from None
    dumper = compressor = None
    try:
        with out_file as out:
            if compress_type == "gz":
                dumper = subprocess.Popen(
                    [*command, f"--dbname={dbname}"], stdout=out, stderr=subprocess.PIPE, text=True, env=env
                )
                compressor = None
            else:
                dumper = subprocess.Popen(
                    [*command, f"--dbname={dbname}"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                assert compress_command is not None
                compressor = subprocess.Popen(compress_command, stdin=dumper.stdout, stdout=out)
                assert dumper.stdout is not None
                dumper.stdout.close()  # the compressor holds the pipe now
            errors = _follow(dumper, on_table)
            assert dumper.stderr is not None
            dumper.stderr.close()
            if dumper.wait() != 0:
                raise OpsError(f"pg_dump failed:\n{errors}")
            if compressor is not None and compressor.wait() != 0:
                raise OpsError(f"{COMPRESSORS[compress_type][0][0]} failed compressing the dump")
        _publish(partial, path)
    except BaseException:
        interrupts.stop_children(dumper, compressor)  # an interrupt: never left running on
        raise
    finally:
        partial.unlink(missing_ok=True)
    return path.stat().st_size


def _publish(partial: Path, path: Path) -> None:
    """Give the finished ``partial`` file its name ``path``, which must not exist: a hard link
    refuses a file of that name made meanwhile; where the file system has no hard links, a rename
    after a check."""
    try:
        os.link(partial, path)
    except FileExistsError:
        raise OpsError(f"{path} exists already: a dump is never overwritten") from None
    except OSError:
        if path.exists():
            raise OpsError(f"{path} exists already: a dump is never overwritten") from None
        partial.replace(path)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parent, each mode 0700 (existing ones are left alone)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        created.chmod(0o700)  # mkdir's mode is masked by the umask, and could be less than 0700


def _private_file(path: Path) -> BinaryIO:
    """A new file open for writing, mode 0600 (the umask does not widen nor narrow it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _follow(process: subprocess.Popen[str], on_table: Callable[[str], None] | None) -> str:
    """Read pg_dump's verbose messages; report tables, keep the error lines."""
    assert process.stderr is not None
    errors = []
    for line in process.stderr:
        if "dumping contents of table" in line:
            if on_table is not None:
                on_table(line.rsplit(" ", 1)[-1].strip().strip('"'))
        elif "error" in line.lower():
            errors.append(line.strip())
    return "\n".join(errors)


def compress_type_of(path: Path) -> str:
    """The compress type a dump file's name says."""
    for compress_type, suffix in sorted(SUFFIXES.items(), key=lambda item: -len(item[1])):
        if path.name.endswith(suffix):
            return compress_type
    raise OpsError(f"{path} is not a spreadedge dump: its name must end in {', '.join(SUFFIXES.values())}")


@contextmanager
def _plain_dump(path: Path) -> Iterator[Path]:
    """The dump as a file pg_restore can read (decompressed next to it while needed)."""
    compress_type = compress_type_of(path)
    if compress_type == "gz":
        yield path
        return
    decompress_command = _tool(compress_type, decompress=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".restore-", suffix=".dump") as plain:
        result = subprocess.run(
            [*decompress_command, str(path)], stdout=plain, stderr=subprocess.PIPE, check=False
        )
        if result.returncode != 0:
            raise OpsError(f"cannot decompress {path}: {result.stderr.decode(errors='replace').strip()}")
        plain.flush()
        yield Path(plain.name)


def holds_schema(path: Path) -> bool:
    """Whether a dump holds schema (a full or schema-only dump), not only rows (data-only).

    Only the table of contents at the start of the file is read: a compressed dump is
    decompressed into pg_restore --list, which stops reading after it.
    """
    pg_restore = [str(PG_BINDIR / "pg_restore"), "--list"]
    compress_type = compress_type_of(path)
    if compress_type == "gz":
        toc = subprocess.run([*pg_restore, str(path)], capture_output=True, text=True, check=False)
    else:
        with subprocess.Popen(
            [*_tool(compress_type, decompress=True), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as decompressor:
            toc = subprocess.run(
                pg_restore, stdin=decompressor.stdout, capture_output=True, text=True, check=False
            )
            assert decompressor.stdout is not None
            decompressor.stdout.close()  # it may be writing still: the broken pipe ends it
    if toc.returncode != 0:
        raise OpsError(f"{path} is not a readable custom-format dump: {toc.stderr.strip()}")
    return any(
        not line.startswith(";") and line.strip() and not _DATA_ENTRY.match(line)
        for line in toc.stdout.splitlines()
    )


def restore(path: Path, conninfo: str, *, keep_cron: bool, as_replica: bool = False) -> None:
    """Restore a dump into the database of ``conninfo`` in one transaction (nothing on an error).

    Data-only dumps restore with the target's triggers disabled (no audit rows, no append-only
    refusal: the rows are restored, not written anew); ``keep_cron`` False leaves out pg_cron,
    which can exist only in the database it serves. ``as_replica``: instead of disabling them (ALTER
    TABLE ... DISABLE TRIGGER ALL, which only a superuser may for the foreign keys' triggers), the
    restore's session sets session_replication_role = replica, under which none of them fires
    (every trigger of the schema fires in origin mode): what a role that is not a superuser, granted
    SET on that parameter, may do.
    """
    if not path.is_file():
        raise OpsError(f"no dump file {path}")
    with _client(conninfo, "pg_restore") as (dbname, env):
        _restore(path, dbname, env, keep_cron=keep_cron, as_replica=as_replica)


def _restore(path: Path, dbname: str, env: dict[str, str], *, keep_cron: bool, as_replica: bool) -> None:
    """pg_restore of ``path`` into ``dbname`` (with ``env``), as :func:`restore` says."""
    if as_replica:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {REPLICA_OPTION}".strip()
    pg_restore = str(PG_BINDIR / "pg_restore")
    with _plain_dump(path) as plain, tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
        toc = subprocess.run([pg_restore, "--list", str(plain)], capture_output=True, text=True, check=False)
        if toc.returncode != 0:
            raise OpsError(f"{path} is not a readable custom-format dump: {toc.stderr.strip()}")
        entries = toc.stdout.splitlines()
        if not keep_cron:
            entries = [line for line in entries if line.startswith(";") or not _CRON_ENTRY.search(line)]
        listing.write("\n".join(entries) + "\n")
        listing.flush()
        result = subprocess.run(
            [
                pg_restore,
                "--exit-on-error",
                "--single-transaction",
                *([] if as_replica else ["--disable-triggers"]),
                f"--use-list={listing.name}",
                f"--dbname={dbname}",
                str(plain),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if result.returncode != 0:
        raise OpsError(f"pg_restore failed, nothing was restored:\n{result.stderr.strip()}")
