"""The portal, as one router for `create_app` to include: pages, their JSON routes and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from aimi.errors import NotFound
from aimi.web import actions
from aimi.web.pages import Pages, templates_for
from aimi.web.sessions import SessionStore

HERE = Path(__file__).parent
STATIC = HERE / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


def router(sessions: SessionStore | None = None) -> APIRouter:
    """Everything the portal serves, under `/portal/` (and `/`, which leads there)."""
    sessions = sessions or SessionStore()
    r = APIRouter(include_in_schema=False)
    r.include_router(Pages(sessions, templates_for(str(HERE / "templates"))).router())
    r.include_router(actions.router(sessions))
    r.add_api_route("/portal/static/{path:path}", static, methods=["GET"])
    return r


async def static(path: str) -> Response:
    """A file of the portal's own (no directory listing, nothing outside `static/`)."""
    file = (STATIC / path).resolve()
    if not file.is_file() or STATIC.resolve() not in file.parents or file.suffix not in _TYPES:
        raise NotFound("Resource not found")
    return FileResponse(
        file,
        media_type=_TYPES[file.suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
