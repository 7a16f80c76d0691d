"""Puts the agent desk on a FastAPI app: its routers, its state, and the agent_ui pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from cti.features.auth import http as auth
from cti.features.crm import http as crm
from cti.features.desk import call_control
from cti.features.desk import ws as agent_ws
from cti.features.desk.desk import AgentDesk
from cti.platform.provide import register
from cti.platform.settings import REPO_ROOT

AGENT_UI_DIR = REPO_ROOT / "agent_ui"
UI_PATH = "/desk"


def mount_agent_ui(app: FastAPI, directory: Path = AGENT_UI_DIR, path: str = UI_PATH) -> None:
    """Serve the agent and supervisor pages (plain files, no build step) at `path`."""
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"agent UI not found: {directory}/index.html")
    app.mount(path, StaticFiles(directory=directory, html=True), name="agent_ui")

    @app.get(path, include_in_schema=False)
    async def _ui_root() -> RedirectResponse:
        return RedirectResponse(f"{path}/")


def install_agent_desk(app: FastAPI, desk: AgentDesk, *, ui: bool = True) -> None:
    """Routers: /auth, /crm, /ws/desk, /desk/state, /agents/me/state, /calls/{id}/... ."""
    register(app, desk)
    app.include_router(auth.router)
    app.include_router(crm.router)
    app.include_router(agent_ws.router)
    app.include_router(call_control.router)
    if ui:
        mount_agent_ui(app)
