"""The history REST API (FastAPI): ``spreadedge serve``; see :func:`spreadedge.api.app.create_app`."""

from spreadedge.api.app import create_app

__all__ = ["create_app"]
