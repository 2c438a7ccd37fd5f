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
