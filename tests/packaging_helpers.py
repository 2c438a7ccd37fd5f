"""Helpers of the tests about where spreadedge takes its SQL from (test_installed_package_hunt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spreadedge import settings


def without_code_sql(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    """Make this process's spreadedge one that carries no SQL of its own (a package built without
    it): neither ``directory/sql`` (its package data) nor ``directory`` (its checkout) has
    migrations/. A project directory without migrations/ then has none to use. Returns the
    migrations directory that load_settings names then."""
    monkeypatch.setattr(settings, "PACKAGE_SQL_DIR", directory / "sql")
    monkeypatch.setattr(settings, "CHECKOUT_DIR", directory)
    return directory / "sql" / "migrations"
