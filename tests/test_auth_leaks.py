"""No secret leaks: not into pg_stat_statements, the server log, error messages or the audit log.

One workload exercises every secret-bearing function (passwords, TOTP, sessions, API keys, master
key rotation), through bind parameters as the Python layer sends them and, where it is harmless,
as literals in the SQL text as a person in psql would type them; then each place is searched.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from psycopg import sql

from auth_helpers import acting_as
from db_fixtures import janitor
from spreadedge.migrate import migrate
from trading_helpers import call, rows

PASSWORD = "Leak-Check-Password-31"
NEW_PASSWORD = "Leak-Check-Password-32"
MASTER_KEY = "leak-check-master-key-000000000000001"
NEW_MASTER_KEY = "leak-check-master-key-000000000000002"
API_KEY = "LEAKCHECK-API-KEY-7f3a"
API_SECRET = "LEAKCHECK-API-SECRET-9b1c"
PASSPHRASE = "LEAKCHECK-PASSPHRASE-44d0"


@dataclass
class Workload:
    """The secrets a workload used, including those the database made (token, TOTP secret)."""

    secrets: list[str] = field(
        default_factory=lambda: [
            PASSWORD,
            NEW_PASSWORD,
            MASTER_KEY,
            NEW_MASTER_KEY,
            API_KEY,
            API_SECRET,
            PASSPHRASE,
        ]
    )
    errors: list[psycopg.Error] = field(default_factory=list)

    def expect_error(self, conn: psycopg.Connection, function: str, **kwargs) -> None:
        try:
            rows(conn, function, **kwargs)
        except psycopg.Error as exc:
            self.errors.append(exc)
        else:
            raise AssertionError(f"{function} did not fail")


def run_workload(conn: psycopg.Connection) -> Workload:
    work = Workload()
    conn.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    user_id = call(conn, "auth.create_user", username="leaky", password=PASSWORD, roles=["trader"])
    # a person in psql: secrets as literals in the SQL text
    conn.execute(
        sql.SQL("select * from auth.login({}, {})").format(sql.Literal("leaky"), sql.Literal(PASSWORD))
    )
    [enrollment] = rows(conn, "auth.enroll_totp", user_id=user_id, password=PASSWORD)
    secret = enrollment["secret"]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    work.secrets += [secret, key.hex()]
    with conn.transaction():
        now = conn.execute("select now()").fetchone()[0]
        totp = TOTP(key, 6, hashes.SHA1(), 30)
        call(
            conn,
            "auth.confirm_totp",
            user_id=user_id,
            password=PASSWORD,
            totp_code=totp.generate(now.timestamp() - 30).decode(),
        )
        session = rows(
            conn,
            "auth.login",
            username="leaky",
            password=PASSWORD,
            totp_code=totp.generate(now.timestamp()).decode(),
        )[0]
    token = session["session_token"]
    work.secrets += [token, hashlib.sha256(token.encode()).hexdigest()]
    rows(conn, "auth.validate_session", token=token)
    call(conn, "auth.change_password", user_id=user_id, new_password=NEW_PASSWORD, old_password=PASSWORD)
    work.secrets.append(conn.execute("select password_hash from auth.users").fetchone()[0])
    key_id = call(
        conn,
        "auth.store_api_key",
        user_id=user_id,
        exchange="binance",
        label="main",
        api_key=API_KEY,
        api_secret=API_SECRET,
        passphrase=PASSPHRASE,
        master_key=MASTER_KEY,
    )
    work.secrets.append(conn.execute("select encode(fingerprint, 'hex') from auth.api_keys").fetchone()[0])
    with acting_as(conn, "spreadedge_engine"):
        rows(conn, "auth.reveal_api_key", key_id=key_id, master_key=MASTER_KEY)
    call(conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=NEW_MASTER_KEY)
    # refusals that carry secrets in their arguments
    work.expect_error(conn, "auth.create_user", username="weak", password=PASSWORD[:8], roles=["trader"])
    work.expect_error(
        conn, "auth.change_password", user_id=user_id, new_password=PASSWORD, old_password=PASSWORD
    )
    work.expect_error(conn, "auth.validate_session", token=token[::-1])
    work.expect_error(conn, "auth.reveal_api_key", key_id=key_id, master_key=MASTER_KEY)
    work.expect_error(
        conn, "auth.rotate_master_key", old_master_key=MASTER_KEY, new_master_key=API_SECRET * 2
    )
    work.expect_error(
        conn,
        "auth.store_api_key",
        user_id=user_id,
        exchange="binance",
        label="again",
        api_key=API_KEY,
        api_secret=API_SECRET,
        master_key=NEW_MASTER_KEY,
    )
    work.expect_error(
        conn,
        "auth.store_api_key",
        user_id=user_id,
        exchange="binance",
        label="x",
        api_key=API_KEY,
        api_secret=API_SECRET,
        master_key=MASTER_KEY,
    )
    conn.execute(sql.SQL("select auth.logout({})").format(sql.Literal(token)))
    return work


def leaked(text: str, work: Workload) -> list[str]:
    return [secret for secret in work.secrets if secret in text]


def test_no_secret_reaches_pg_stat_statements_with_utility_tracking_on(auth_db):
    # pg_stat_statements starts empty for each test database (db_fixtures.db_url)
    auth_db.execute("set pg_stat_statements.track = 'all'")
    auth_db.execute("set pg_stat_statements.track_utility = on")
    work = run_workload(auth_db)
    queries = "\n".join(row[0] for row in auth_db.execute("select query from pg_stat_statements"))
    assert '"store_api_key"(' in queries
    assert leaked(queries, work) == []


def test_no_secret_reaches_error_messages(auth_db):
    work = run_workload(auth_db)
    assert len(work.errors) == 7
    for error in work.errors:
        diag = error.diag
        texts = [
            str(error),
            diag.message_primary,
            diag.message_detail,
            diag.message_hint,
            diag.context,
            diag.internal_query,
        ]
        assert leaked("\n".join(t for t in texts if t), work) == [], str(error)
    assert sorted(e.sqlstate for e in work.errors) == [
        "22S11",
        "23S08",
        "28S01",
        "28S02",
        "28S03",
        "28S03",
        "28S03",
    ]


def test_no_secret_reaches_the_audit_log_or_the_security_events(auth_db):
    work = run_workload(auth_db)
    logged = "\n".join(
        row[0]
        for row in auth_db.execute(
            "select to_jsonb(l)::text from audit.log l union all select to_jsonb(e)::text from audit.security_events e"
        )
    )
    assert '"table_name": "auth.api_keys"' in logged and '"table_name": "auth.users"' in logged
    assert leaked(logged, work) == []


@pytest.fixture
def migrated_url(pg_cluster, project_settings):
    """A database migrated from scratch (not cloned), so it has the database-level log settings."""
    with janitor(pg_cluster, "leak_check"):
        url = pg_cluster.url("leak_check")
        migrate(url, project_settings, echo=lambda line: None)
        yield url


def test_no_secret_reaches_the_server_log_with_log_statement_all(pg_cluster, migrated_url):
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("alter database leak_check set log_statement = 'all'")
        conn.execute("alter database leak_check set log_min_duration_statement = 0")
    start = pg_cluster.log_file.stat().st_size
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        assert conn.execute("show log_parameter_max_length").fetchone()[0] == "0"
        work = run_workload(conn)
    log = pg_cluster.log_file.read_bytes()[start:].decode(errors="replace")
    assert "auth.store_api_key" in log  # statements were logged ...
    # ... but the secrets passed as literals by the psql-style calls are the caller's choice: the
    # two literal calls are the only lines allowed to show the password and the token
    literal_lines = [
        line for line in log.splitlines() if "auth.login('leaky'" in line or "auth.logout('" in line
    ]
    bound = "\n".join(line for line in log.splitlines() if line not in literal_lines)
    assert leaked(bound, work) == []
