"""Time query parameters: a time whose zone puts it past the last UTC instant is a 422 with a
reason (it was a 500 from the storage layer's conversion on GET /events; the reports check
their own range, 1970-9998)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from cti.features.events import http as events_http
from cti.platform.http_guards import QueryTime


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/t")
    async def t(since: QueryTime | None = None) -> str | None:
        return since.isoformat() if since else None

    return app


async def test_a_time_past_the_last_utc_instant_is_refused_with_a_reason() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/t", params={"since": "9999-12-31T23:59:59-23:59"})
        assert r.status_code == 422
        assert "time out of range" in r.json()["detail"][0]["msg"]
        ok = await client.get("/t", params={"since": "2026-12-01T10:00:00+08:00"})
        assert ok.status_code == 200
        assert ok.json() == "2026-12-01T10:00:00+08:00"  # kept as given, zone and all
        naive = await client.get("/t", params={"since": "2026-12-01T10:00:00"})
        assert naive.status_code == 200


def test_the_event_log_route_takes_its_times_through_the_check() -> None:
    for router, path in ((events_http.router, "/events"),):
        route = next(r for r in router.routes if getattr(r, "path", None) == path)
        names = {p.name: p for p in route.dependant.query_params}  # type: ignore[attr-defined]
        for name in ("since", "until"):
            _, errors = names[name].validate("9999-12-31T23:59:59-23:59", {}, loc=("query", name))
            assert errors, f"{path} {name} takes a time past the last UTC instant"
            _, errors = names[name].validate("2026-12-01T10:00:00+08:00", {}, loc=("query", name))
            assert not errors
