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
