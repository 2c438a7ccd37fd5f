"""spreadedge users … and keys …: the CLI over the auth functions, and the master key file."""

from __future__ import annotations

import asyncio
import stat

import pytest
from click.testing import CliRunner

from auth_helpers import MASTER_KEY, PASSWORD, acting_as
from spreadedge import masterkey
from spreadedge.cli import main
from spreadedge.security import SecuritySystem
from trading_helpers import rows


def invoke(url, *args, env=None, input=None):
    return CliRunner().invoke(main, ["--database-url", url, *args], env=env, input=input)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "master.key"
    masterkey.write_key_file(path, MASTER_KEY)
    return path


def test_users_create_and_list_show_roles_and_state_without_secrets(db_url, auth_db):
    result = invoke(
        db_url,
        "users",
        "create",
        "alice",
        "--role",
        "trader",
        "--role",
        "viewer",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "user alice created (id 1, roles trader, viewer)" in result.output
    listing = invoke(db_url, "users", "list")
    assert listing.exit_code == 0
    assert listing.output.splitlines()[2].split() == [
        "1",
        "alice",
        "trader,viewer",
        "yes",
        "no",
        "no",
        "never",
    ]
    assert PASSWORD not in result.output + listing.output


def test_users_create_with_a_weak_password_fails_cleanly(db_url, auth_db):
    result = invoke(db_url, "users", "create", "alice", "--password", "short")
    assert result.exit_code == 1
    assert result.output == "Error: the password is shorter than 12 characters\n"


def test_users_disable_enable_and_unlock_by_username(db_url, auth_db):
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    assert (
        invoke(db_url, "users", "disable", "alice").output
        == "user alice disabled; its sessions are revoked\n"
    )
    assert auth_db.execute("select is_enabled from auth.user_accounts").fetchone()[0] is False
    assert invoke(db_url, "users", "enable", "alice").exit_code == 0
    for _ in range(5):
        rows(auth_db, "auth.login", username="alice", password="wrong")
    assert auth_db.execute("select is_locked from auth.user_accounts").fetchone()[0] is True
    assert invoke(db_url, "users", "unlock", "alice").output == "user alice unlocked\n"
    assert auth_db.execute("select is_locked from auth.user_accounts").fetchone()[0] is False


def test_users_disable_of_an_unknown_user_names_it(db_url, auth_db):
    result = invoke(db_url, "users", "disable", "ghost")
    assert (result.exit_code, result.output) == (1, 'Error: user "ghost" does not exist\n')


def test_keys_generate_writes_a_private_key_file_and_never_overwrites(db_url, tmp_path):
    path = tmp_path / "new.key"
    result = invoke(db_url, "keys", "generate", "--out", str(path))
    assert result.exit_code == 0
    key = path.read_text().strip()
    assert len(key) == 43 and key not in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = invoke(db_url, "keys", "generate", "--out", str(path))
    assert (again.exit_code, again.output) == (
        1,
        f"Error: {path} already exists: a master key is never overwritten\n",
    )
    assert path.read_text().strip() == key


def test_keys_store_list_and_rotate_through_the_cli(db_url, auth_db, key_file, tmp_path):
    env = {"SPREADEDGE_MASTER_KEY_FILE": str(key_file), "SPREADEDGE_MASTER_KEY": ""}
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    stored = invoke(
        db_url,
        "keys",
        "store",
        "--user",
        "alice",
        "--exchange",
        "okx",
        "--label",
        "main",
        "--with-passphrase",
        env=env,
        input="AKIA-cli-1\ncli-secret-1\ncli-pass-1\n",
    )
    assert stored.exit_code == 0, stored.output
    assert stored.output.endswith("API key 1 stored for alice on okx (main)\n")
    listing = invoke(db_url, "keys", "list", env=env)
    assert listing.output.splitlines()[2].split()[:6] == ["1", "alice", "okx", "main", "read,trade", "1"]
    new_key = tmp_path / "next.key"
    invoke(db_url, "keys", "generate", "--out", str(new_key))
    rotated = invoke(db_url, "keys", "rotate", "--new-key-file", str(new_key), env=env)
    assert rotated.exit_code == 0, rotated.output
    assert rotated.output.startswith("re-encrypted 1 API keys under the new master key")
    with acting_as(auth_db, "spreadedge_engine"):
        [revealed] = rows(auth_db, "auth.reveal_api_key", key_id=1, master_key=new_key.read_text().strip())
    assert (revealed["api_key"], revealed["api_secret"], revealed["passphrase"]) == (
        "AKIA-cli-1",
        "cli-secret-1",
        "cli-pass-1",
    )
    for secret in ("AKIA-cli-1", "cli-secret-1", "cli-pass-1", MASTER_KEY, new_key.read_text().strip()):
        assert secret not in stored.output + listing.output + rotated.output


def test_keys_rotate_with_the_wrong_current_key_changes_nothing(db_url, auth_db, key_file, tmp_path):
    env = {"SPREADEDGE_MASTER_KEY_FILE": str(key_file), "SPREADEDGE_MASTER_KEY": ""}
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    invoke(
        db_url,
        "keys",
        "store",
        "--user",
        "alice",
        "--exchange",
        "binance",
        "--label",
        "main",
        env=env,
        input="AKIA-cli-1\ncli-secret-1\n",
    )
    wrong = tmp_path / "wrong.key"
    masterkey.write_key_file(wrong, "w" * 40)
    new_key = tmp_path / "next.key"
    masterkey.write_key_file(new_key, "n" * 40)
    result = invoke(
        db_url,
        "keys",
        "rotate",
        "--new-key-file",
        str(new_key),
        env={"SPREADEDGE_MASTER_KEY_FILE": str(wrong), "SPREADEDGE_MASTER_KEY": ""},
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: the master key is not master key version 1")
    assert auth_db.execute("select key_version from auth.api_keys").fetchone()[0] == 1


def test_keys_store_without_a_master_key_says_how_to_make_one(db_url, auth_db, tmp_path):
    result = invoke(
        db_url,
        "keys",
        "store",
        "--user",
        "alice",
        "--exchange",
        "okx",
        "--label",
        "x",
        env={"SPREADEDGE_MASTER_KEY_FILE": str(tmp_path / "missing.key"), "SPREADEDGE_MASTER_KEY": ""},
    )
    assert result.exit_code == 1
    assert "does not exist (spreadedge keys generate makes one)" in result.output


def test_keys_store_with_a_key_file_that_is_a_directory_fails_cleanly(db_url, auth_db, tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    result = invoke(
        db_url,
        "keys",
        "store",
        "--user",
        "alice",
        "--exchange",
        "okx",
        "--label",
        "x",
        env={"SPREADEDGE_MASTER_KEY_FILE": str(folder), "SPREADEDGE_MASTER_KEY": ""},
    )
    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot read master key file {folder}: Is a directory\n",
    )


def test_a_key_file_that_is_not_text_is_refused_without_quoting_it(tmp_path):
    path = tmp_path / "binary.key"
    path.write_bytes(b"\xff" * 40)
    path.chmod(0o600)
    with pytest.raises(masterkey.MasterKeyError) as caught:
        masterkey.read_key_file(path)
    assert str(caught.value) == f"cannot read master key file {path}: it is not UTF-8 text"


def test_keys_generate_where_the_file_cannot_be_made_fails_cleanly(db_url, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    path = blocker / "keys" / "new.key"
    result = invoke(db_url, "keys", "generate", "--out", str(path))
    assert (result.exit_code, result.output) == (
        1,
        f"Error: cannot create master key file {path}: Not a directory\n",
    )


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "open.key"
    path.write_text("k" * 40)
    path.chmod(0o644)
    with pytest.raises(masterkey.MasterKeyError, match="readable by others"):
        masterkey.read_key_file(path)


def test_the_environment_variable_wins_over_the_key_file(project_settings, key_file):
    env = {"SPREADEDGE_MASTER_KEY": "e" * 40, "SPREADEDGE_MASTER_KEY_FILE": str(key_file)}
    assert masterkey.load(project_settings, env) == "e" * 40
    assert masterkey.load(project_settings, {"SPREADEDGE_MASTER_KEY_FILE": str(key_file)}) == MASTER_KEY


def test_security_system_authenticates_and_stores_keys_as_the_seeds_call_it(db_url, auth_db):
    security = SecuritySystem(db_url, master_key=MASTER_KEY)
    auth_db.execute("select auth.create_user('trader1', %s)", [PASSWORD])

    async def scenario():
        ok = await security.authenticate_user(
            username="trader1",
            password=PASSWORD,
            ip_address="192.168.1.100",
            user_agent="CryptoSpreadEdge/1.0",
        )
        refused = await security.authenticate_user(
            "trader1", "wrong", "192.168.1.100", "CryptoSpreadEdge/1.0"
        )
        stored = await security.create_api_key(
            user_id=1, exchange_id="binance", api_key="k-1", secret_key="s-1"
        )
        duplicate = await security.create_api_key(
            user_id=1, exchange_id="binance", api_key="k-1", secret_key="s-1"
        )
        session = await security.validate_session(ok[1])
        return ok, refused, stored, duplicate, session

    ok, refused, stored, duplicate, session = asyncio.run(scenario())
    assert (ok[0], len(ok[1]), ok[2]) == (True, 64, "logged in")
    assert refused == (
        False,
        None,
        "login refused: wrong username or password, or the account is locked or disabled",
    )
    assert stored == (True, "API key 1 stored")
    assert duplicate == (False, "this API key is already stored for exchange binance")
    assert (session.user_id, session.username, session.roles) == (1, "trader1", ["trader"])


@pytest.mark.parametrize("key", [MASTER_KEY + "\n", " " + MASTER_KEY, MASTER_KEY + "\r\n"])
def test_a_master_key_variable_with_white_space_at_an_end_is_refused_without_quoting_it(
    project_settings, key
):
    with pytest.raises(masterkey.MasterKeyError) as caught:
        masterkey.load(project_settings, {"SPREADEDGE_MASTER_KEY": key})
    assert str(caught.value) == (
        "SPREADEDGE_MASTER_KEY starts or ends with white space (often a newline kept from a file):"
        " remove it, or name a key file with SPREADEDGE_MASTER_KEY_FILE"
    )


def test_keys_store_with_a_master_key_variable_ending_in_a_newline_fails_cleanly(db_url, auth_db):
    result = invoke(
        db_url,
        "keys",
        "store",
        "--user",
        "alice",
        "--exchange",
        "okx",
        "--label",
        "x",
        env={"SPREADEDGE_MASTER_KEY": MASTER_KEY + "\n"},
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: SPREADEDGE_MASTER_KEY starts or ends with white space")
    assert MASTER_KEY not in result.output
    assert auth_db.execute("select count(*) from auth.master_keys").fetchone()[0] == 0


def _store(url, env, username="alice", label="main"):
    return invoke(
        url,
        "keys",
        "store",
        "--user",
        username,
        "--exchange",
        "binance",
        "--label",
        label,
        env=env,
        input="AKIA-cli-1\ncli-secret-1\n",
    )


def test_keys_list_shows_stored_times_in_utc_whatever_the_session_time_zone(db_url, auth_db, key_file):
    env = {"SPREADEDGE_MASTER_KEY_FILE": str(key_file), "SPREADEDGE_MASTER_KEY": ""}
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    _store(db_url, env)
    stored = auth_db.execute(
        "select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') from auth.api_keys"
    ).fetchone()[0]
    listing = invoke(db_url, "keys", "list", env={"PGTZ": "Asia/Tokyo"})
    assert " ".join(listing.output.splitlines()[2].split()[6:8]) == stored


def test_users_list_shows_the_last_login_in_utc_whatever_the_session_time_zone(db_url, auth_db):
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    rows(auth_db, "auth.login", username="alice", password=PASSWORD)
    login_at = auth_db.execute(
        "select to_char(last_login_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') from auth.users"
    ).fetchone()[0]
    listing = invoke(db_url, "users", "list", env={"PGTZ": "America/New_York"})
    assert " ".join(listing.output.splitlines()[2].split()[6:]) == login_at


def test_keys_revoke_of_a_key_already_revoked_says_so(db_url, auth_db, key_file):
    env = {"SPREADEDGE_MASTER_KEY_FILE": str(key_file), "SPREADEDGE_MASTER_KEY": ""}
    invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    _store(db_url, env)
    first = invoke(db_url, "keys", "revoke", "1")
    again = invoke(db_url, "keys", "revoke", "1")
    revoked_at = auth_db.execute(
        "select to_char(revoked_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') from auth.api_keys"
    ).fetchone()[0]
    assert (first.exit_code, first.output) == (0, "API key 1 revoked\n")
    assert (again.exit_code, again.output) == (0, f"API key 1 was already revoked at {revoked_at} UTC\n")


def test_keys_revoke_of_an_unknown_key_names_it(db_url, auth_db):
    result = invoke(db_url, "keys", "revoke", "99")
    assert (result.exit_code, result.output) == (1, "Error: API key 99 does not exist\n")


def test_keys_revoke_of_an_id_beyond_bigint_is_a_usage_error_not_a_missing_migration(db_url, auth_db):
    result = invoke(db_url, "keys", "revoke", "99999999999999999999")
    assert result.exit_code == 2
    assert "Invalid value for 'KEY_ID'" in result.output
    assert "migrate" not in result.output


def test_users_create_names_each_role_once(db_url, auth_db):
    result = invoke(
        db_url, "users", "create", "alice", "--role", "admin", "--role", "admin", "--password", PASSWORD
    )
    assert (result.exit_code, result.output) == (0, "user alice created (id 1, roles admin)\n")


def test_users_create_help_warns_that_a_password_option_is_visible_to_others(db_url):
    result = invoke(db_url, "users", "create", "--help")
    assert "visible in ps" in " ".join(result.output.split())


def test_keys_store_for_an_unknown_user_fails_before_asking_for_any_secret(db_url, auth_db, key_file):
    env = {"SPREADEDGE_MASTER_KEY_FILE": str(key_file), "SPREADEDGE_MASTER_KEY": ""}
    result = _store(db_url, env, username="ghost")
    assert (result.exit_code, result.output) == (1, 'Error: user "ghost" does not exist\n')


def test_keys_list_for_an_unknown_user_names_it(db_url, auth_db):
    result = invoke(db_url, "keys", "list", "--user", "ghost")
    assert (result.exit_code, result.output) == (1, 'Error: user "ghost" does not exist\n')


def test_security_system_create_api_key_with_a_user_id_that_is_no_number_is_refused_not_raised(
    db_url, auth_db
):
    security = SecuritySystem(db_url, master_key=MASTER_KEY)
    result = asyncio.run(
        security.create_api_key(user_id="user_id", exchange_id="binance", api_key="k-1", secret_key="s-1")
    )
    assert result == (False, "user id 'user_id' is not a number")


def test_users_commands_work_for_a_uid_without_a_user_name(db_url, auth_db, monkeypatch):
    # as in a container run with an arbitrary uid, no passwd entry and no USER or LOGNAME
    def no_name() -> str:
        raise KeyError("getpwuid(): uid not found: 54321")

    monkeypatch.setattr("getpass.getuser", no_name)
    result = invoke(db_url, "users", "create", "alice", "--password", PASSWORD)
    assert (result.exit_code, result.output) == (0, "user alice created (id 1, roles trader)\n")
