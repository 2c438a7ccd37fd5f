"""Deployment settings: file, environment, validation."""

from pathlib import Path

import pytest

from spreadedge.settings import SettingsError, load_settings


def test_environment_overrides_the_settings_file(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text(
        '[render]\npartition_premake = 6\nretention_audit = "24 months"\n'
    )
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_PARTITION_PREMAKE": "8"})
    assert (settings.render.partition_premake, settings.render.retention_audit) == (8, "24 months")


def test_a_retention_that_is_not_an_interval_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_RETENTION_TRADES": "1 month'; drop table x; --"})
    assert str(caught.value).startswith("retention_trades must be an interval like '24 months'")


def test_an_unknown_render_setting_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[render]\npremake = 6\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "unknown [render] setting(s): premake"


def test_the_example_settings_file_loads_with_the_defaults(tmp_path: Path):
    example = Path(__file__).resolve().parent.parent / "spreadedge.toml.example"
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_SETTINGS": str(example)})
    assert (settings.port, settings.render.partition_premake, settings.render.retention_orders) == (
        54329,
        4,
        None,
    )


def test_a_history_of_zero_days_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_PARTITION_HISTORY_DAYS": "0"})
    assert str(caught.value) == "partition_history_days must be at least 1, got 0"


@pytest.mark.parametrize("name", ["retention_orders", "retention_order_events", "retention_trades"])
def test_a_retention_for_orders_order_events_or_trades_is_refused_naming_the_setting(
    tmp_path: Path, name: str
):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={f"SPREADEDGE_{name.upper()}": "1 month"})
    assert str(caught.value) == (
        f"{name} must be none, got '1 month': pg_partman would drop whole partitions by age, with open orders"
        " and the fills of open positions; remove old orders with spreadedge cleanup orders --older-than 30d"
    )


def test_a_retention_of_none_for_orders_is_accepted(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text('[render]\nretention_orders = "none"\n')
    settings = load_settings(project_dir=tmp_path, env={})
    assert settings.render.retention_orders is None


def test_a_settings_file_that_cannot_be_read_is_refused_without_traceback(tmp_path: Path):
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SETTINGS": str(tmp_path / "bad.toml")})
    assert str(caught.value) == f"cannot read the settings file {tmp_path / 'bad.toml'}: it is not UTF-8 text"


def test_an_unknown_section_is_refused_naming_it(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[rendr]\npartition_premake = 6\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == (
        f"{tmp_path / 'spreadedge.toml'}: unknown section(s) or setting(s) outside a section: rendr "
        "(the sections are [cluster], [render], [notify], [backup])"
    )


def test_an_unknown_cluster_setting_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text('[cluster]\nhome = "/srv/spreadedge"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "unknown [cluster] setting(s): home"


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("render = 5\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "[render] must be a table of settings, got 5"


@pytest.mark.parametrize(("value", "shown"), [("4.7", "4.7"), ("true", "True")], ids=["float", "boolean"])
def test_a_render_integer_that_is_not_a_whole_number_is_refused(tmp_path: Path, value: str, shown: str):
    (tmp_path / "spreadedge.toml").write_text(f"[render]\npartition_premake = {value}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == f"partition_premake must be an integer, got {shown}"


@pytest.mark.parametrize(
    ("name", "value", "maximum"),
    [
        ("partition_premake", "99999999999999999999", "366"),
        ("partition_premake", "367", "366"),
        ("partition_history_months", "1201", "1,200"),
        ("partition_history_days", "3661", "3,660"),
    ],
)
def test_a_partition_count_above_its_maximum_is_refused_naming_it(
    tmp_path: Path, name: str, value: str, maximum: str
):
    # 99999999999999999999 rendered into migration 0001, which failed naming no setting
    (tmp_path / "spreadedge.toml").write_text(f"[render]\n{name} = {value}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == f"{name} must be at most {maximum}, got {int(value):,}"


def test_a_partition_count_at_its_maximum_is_taken(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[render]\npartition_premake = 366\n")
    assert load_settings(project_dir=tmp_path, env={}).render.partition_premake == 366


@pytest.mark.parametrize("port", ["0", "65536"])
def test_a_cluster_port_outside_1_to_65535_is_refused(tmp_path: Path, port: str):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_PORT": port})
    assert str(caught.value) == f"SPREADEDGE_PORT must be a port between 1 and 65535, got {port}"


def test_a_cluster_port_in_the_file_that_is_not_an_integer_names_the_file_setting(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text('[cluster]\nport = "abc"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "[cluster] port must be an integer, got 'abc'"


@pytest.mark.parametrize(
    "value", ["1_0", "\u0663", "\uff15"], ids=["underscore", "arabic-indic", "full-width"]
)
def test_an_environment_integer_that_is_not_ascii_digits_is_refused(tmp_path: Path, value: str):
    # int() read '1_0' as 10 and an Arabic-Indic three as 3
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_PARTITION_PREMAKE": value})
    assert str(caught.value) == f"partition_premake must be an integer, got {value!r}"


def test_an_smtp_starttls_that_is_not_a_boolean_word_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SMTP_STARTTLS": "ture"})
    assert str(caught.value) == "smtp_starttls must be true or false (1/0, yes/no, on/off), got 'ture'"


def test_an_smtp_port_above_65535_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SMTP_PORT": "99999"})
    assert str(caught.value) == "smtp_port must be a port between 1 and 65535, got 99999"


def test_a_notify_timeout_of_zero_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_TIMEOUT_SECONDS": "0"})
    assert str(caught.value) == "timeout_seconds must be more than zero seconds, got 0"


def test_email_to_that_is_not_a_list_of_addresses_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[notify]\nemail_to = 5\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "email_to must be a list of addresses, got 5"


def test_a_backup_path_that_is_not_a_string_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[backup]\nrepo_path = 5\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "backup repo_path must be a string, got 5"


def test_a_settings_file_named_by_spreadedge_settings_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SETTINGS": str(tmp_path / "missing.toml")})
    assert str(caught.value) == f"SPREADEDGE_SETTINGS names {tmp_path / 'missing.toml'}, which does not exist"


def test_without_spreadedge_settings_a_project_without_its_file_takes_the_defaults(tmp_path):
    assert load_settings(project_dir=tmp_path, env={}).render.partition_premake == 4


def test_the_repr_of_notify_settings_shows_no_webhook_credentials():
    from spreadedge.settings import NotifySettings

    shown = repr(NotifySettings(webhook_url="https://hooks:s3cret@example.test/hook", webhook_secret="k3y"))

    assert "s3cret" not in shown and "k3y" not in shown


@pytest.mark.parametrize("name", ["backoff_seconds", "max_backoff_seconds"])
def test_a_notify_backoff_beyond_one_year_is_refused_naming_the_setting(tmp_path: Path, name: str):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={f"SPREADEDGE_{name.upper()}": "1e13"})
    assert str(caught.value) == f"{name} must be from 0 to 3.1536e+07 seconds, got '1e13'"


def test_a_notify_backoff_of_one_year_is_accepted(tmp_path: Path):
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_MAX_BACKOFF_SECONDS": "31536000"})
    assert settings.notify.max_backoff_seconds == 31536000.0


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_notify_backoff_that_is_not_finite_or_is_negative_is_refused(tmp_path: Path, value: str):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_BACKOFF_SECONDS": value})
    assert str(caught.value) == f"backoff_seconds must be from 0 to 3.1536e+07 seconds, got '{value}'"


def test_a_notify_timeout_beyond_one_hour_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_TIMEOUT_SECONDS": "1e10"})
    assert str(caught.value) == "timeout_seconds must be from 0 to 3600 seconds, got '1e10'"


def test_notify_max_attempts_beyond_1000_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_MAX_ATTEMPTS": "99999999999"})
    assert str(caught.value) == "max_attempts must be at most 1000, got 99999999999"


def test_notify_max_attempts_of_zero_is_refused(tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_MAX_ATTEMPTS": "0"})
    assert str(caught.value) == "max_attempts must be at least 1, got 0"


def test_notify_batch_size_of_zero_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text("[notify]\nbatch_size = 0\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={})
    assert str(caught.value) == "batch_size must be at least 1, got 0"


def test_an_smtp_username_without_starttls_to_a_remote_host_is_refused(tmp_path: Path):
    (tmp_path / "spreadedge.toml").write_text(
        '[notify]\nsmtp_host = "mail.example.com"\nsmtp_username = "alerts"\n'
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(project_dir=tmp_path, env={"SPREADEDGE_SMTP_PASSWORD": "hunter2"})
    assert str(caught.value) == (
        "smtp_username is set but smtp_starttls is not: the SMTP password would be sent to mail.example.com "
        "in the clear; set smtp_starttls = true (or use a relay on localhost)"
    )


def test_an_smtp_username_with_starttls_is_accepted(tmp_path: Path):
    env = {"SPREADEDGE_SMTP_HOST": "mail.example.com", "SPREADEDGE_SMTP_USERNAME": "alerts"}
    settings = load_settings(project_dir=tmp_path, env={**env, "SPREADEDGE_SMTP_STARTTLS": "true"})
    assert (settings.notify.smtp_username, settings.notify.smtp_starttls) == ("alerts", True)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_an_smtp_username_without_starttls_to_a_loopback_host_is_accepted(tmp_path: Path, host: str):
    env = {"SPREADEDGE_SMTP_HOST": host, "SPREADEDGE_SMTP_USERNAME": "alerts"}
    assert load_settings(project_dir=tmp_path, env=env).notify.smtp_username == "alerts"


def test_an_empty_email_from_keeps_the_default_sender(tmp_path: Path):
    settings = load_settings(project_dir=tmp_path, env={"SPREADEDGE_EMAIL_FROM": ""})
    assert settings.notify.email_from == "spreadedge@localhost"
