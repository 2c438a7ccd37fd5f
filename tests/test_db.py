"""Connections: DATABASE_URL wins over the embedded cluster; the actor survives a rollback."""

from __future__ import annotations

from pathlib import Path

from spreadedge import db
from spreadedge.cluster import Cluster
from spreadedge.settings import Settings


def settings_for(cluster: Cluster, database_url: str | None = None) -> Settings:
    return Settings(project_dir=Path.cwd(), database_url=database_url, home=cluster.home, port=cluster.port)


def test_conninfo_is_the_embedded_cluster_url_without_database_url(pg_cluster: Cluster):
    assert db.conninfo(settings_for(pg_cluster)) == pg_cluster.url()


def test_conninfo_is_database_url_when_one_is_set(pg_cluster: Cluster):
    url = "postgresql://someone@db.example/trading"

    assert db.conninfo(settings_for(pg_cluster, url), start=False) == url


def test_connect_sets_the_actor_for_the_whole_session(pg_cluster: Cluster):
    with db.connect(settings_for(pg_cluster), actor="alice") as conn:
        conn.rollback()
        actor = conn.execute("select current_setting('spreadedge.actor')").fetchone()

    assert actor == ("alice",)
