"""What the libpq of PostgreSQL's own programs (psql, pg_dump, pg_restore) can honour of a URL.

spreadedge's own connections use psycopg's libpq (18 in the binary wheel pinned in
pyproject.toml); psql, pg_dump and pg_restore load the system's ``libpq.so.5``, PostgreSQL 15's on
Debian 12. That one knows fewer parameters: ``require_auth`` and ``sslcertmode`` (16),
``sslnegotiation`` (17), ``sslrootcert=system`` (16), among others.

why: psql is given the connection in libpq's environment variables (see cli.client_connection), and
a libpq that does not know a variable ignores it: with ``require_auth=scram-sha-256`` or
``sslcertmode=require`` in DATABASE_URL every command honoured them and ``spreadedge psql``
connected without them, silently weaker. pg_dump and pg_restore failed on them (``invalid
connection option``) or read ``sslrootcert=system`` as a file named "system", while every other
command worked. Both are now refused up front, naming the parameter and what to do.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping


class _Option(ctypes.Structure):
    """libpq's PQconninfoOption."""

    _fields_ = [
        ("keyword", ctypes.c_char_p),
        ("envvar", ctypes.c_char_p),
        ("compiled", ctypes.c_char_p),
        ("val", ctypes.c_char_p),
        ("label", ctypes.c_char_p),
        ("dispchar", ctypes.c_char_p),
        ("dispsize", ctypes.c_int),
    ]


@functools.cache
def system_libpq() -> tuple[str, frozenset[str]] | None:
    """The version (``15.20``) and the connection keywords of the system's libpq.so.5, the one
    psql, pg_dump and pg_restore load; None when it cannot be loaded (nothing is checked then)."""
    try:
        lib = ctypes.CDLL("libpq.so.5")
    except OSError:
        return None
    lib.PQconndefaults.restype = ctypes.POINTER(_Option)
    lib.PQconninfoFree.argtypes = [ctypes.POINTER(_Option)]
    lib.PQlibVersion.restype = ctypes.c_int
    options = lib.PQconndefaults()
    if not options:
        return None
    try:
        keywords = []
        index = 0
        while options[index].keyword is not None:
            keywords.append(options[index].keyword.decode())
            index += 1
    finally:
        lib.PQconninfoFree(options)
    number = lib.PQlibVersion()
    return f"{number // 10000}.{number % 10000}", frozenset(keywords)


def unsupported(params: Mapping[str, object], program: str) -> str | None:
    """Why ``program`` (psql, pg_dump, pg_restore) cannot honour the connection ``params``, or None.

    The message names the parameters, never their values (an unknown one could be a secret).
    """
    found = system_libpq()
    if found is None:
        return None
    version, keywords = found
    unknown = sorted(set(params) - keywords)
    if unknown:
        names = ", ".join(unknown)
        return (
            f"DATABASE_URL sets {names}, which {program} cannot honour: it uses the system's libpq "
            f"{version}, which knows no {names} (spreadedge's own connections use a newer libpq, "
            f"which does); {program} is refused rather than run without it. Remove {names} from the "
            f"URL for this command (--database-url), knowing that the connection goes without it"
        )
    if str(params.get("sslrootcert", "")) == "system" and int(version.split(".")[0]) < 16:
        return (
            f"DATABASE_URL sets sslrootcert=system, which {program} cannot honour: it uses the system's "
            f"libpq {version}, which reads it as a file named 'system' (the system's trusted roots came "
            "with libpq 16); give the CA file instead, such as "
            "sslrootcert=/etc/ssl/certs/ca-certificates.crt for the system's roots on Debian"
        )
    return None
