"""The app-wide HTTP guards (cti.platform.http_guards) on the product's app: bounded ids,
strict JSON, bounded bodies, bounded 422s, browser hardening headers, the /metrics token."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cti.domain.routing.events import CallOffered
from cti.platform.http_guards import MAX_ECHO_CHARS, MAX_ERRORS, MAX_ID, install_http_guards
from cti.platform.settings import HttpSettings
from tests.api.desk_app import desk_app
from tests.api.full_app import full_app

# past PostgreSQL's INTEGER, SQLite's INTEGER, 64 bits, and far below
OUT_OF_RANGE_IDS = (MAX_ID + 1, 2**63, 2**64, 10**30, -(2**63) - 1, 0, -1)


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cti")


async def test_ids_out_of_range_answer_422_and_the_largest_id_404(
    database_url: str, tmp_path: Path
) -> None:
    """On both backends: an id no INTEGER column holds is refused (not a driver overflow)."""
    async with full_app(tmp_path, database_url=database_url) as env, client(env.app) as c:
        admin = env.bearer("admin")
        routes = [("GET", "/crm/customers/{}"), ("PATCH", "/crm/customers/{}"),
                  ("POST", "/callbacks/{}/done"), ("GET", "/voicemails/{}"),
                  ("GET", "/voicemails/{}/audio")]
        for method, path in routes:
            body = {"name": "x"} if method == "PATCH" else None
            for bad in OUT_OF_RANGE_IDS:
                r = await c.request(method, path.format(bad), headers=admin, json=body)
                assert r.status_code == 422, (method, path, bad, r.text)
            r = await c.request(method, path.format(MAX_ID), headers=admin, json=body)
            assert r.status_code == 404, (method, path, r.text)

        # ids in bodies too: the wrap-up's customer id
        r = await c.post("/calls/c1/disposition", headers=admin,
                         json={"outcome": "resolved", "customer_id": 2**64})
        assert r.status_code == 422, r.text
        # query numbers
        r = await c.get(f"/calls?limit={2**64}", headers=admin)
        assert r.status_code == 422, r.text


async def test_string_ids_are_length_bounded(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        admin = env.bearer("admin")
        long_id = "c" * 65
        for method, path in (("GET", f"/calls/{long_id}/procedures"),
                             ("GET", f"/calls/{long_id}/routing"),
                             ("POST", f"/calls/{long_id}/ivr/commands/next"),
                             ("GET", f"/agents/{'1' * 65}/skills"),
                             ("GET", f"/agents/{'1' * 65}/state"),
                             ("GET", f"/voicemails?mailbox={'m' * 65}")):
            r = await c.request(method, path, headers=admin)
            assert r.status_code == 422, (path, r.text)


def echo_app(**http: Any) -> FastAPI:
    app = FastAPI()
    install_http_guards(app, HttpSettings(**http))

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    return app


@pytest.mark.parametrize(
    "text",
    ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x": 1e999}',
     '{"x": [1, {"y": -1e400}]}'],
)
async def test_nan_and_infinity_in_json_bodies_answer_422(text: str) -> None:
    async with client(echo_app()) as c:
        r = await c.post("/echo", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid"
    assert "not valid JSON" in r.text or "out of range" in r.text


async def test_finite_json_and_non_json_errors_are_left_to_the_route() -> None:
    async with client(echo_app()) as c:
        r = await c.post("/echo", json={"x": 1.5e300, "y": [1, 2]})
        assert r.status_code == 200
        assert r.json() == {"x": 1.5e300, "y": [1, 2]}
        r = await c.post("/echo", content='{"x": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    "body",
    [b"\xd9d\xd6", b"[" * 100_000 + b"]" * 100_000, b'{"x": ' + b"9" * 5000 + b"}"],
    ids=["not-utf8", "nested-too-deep", "too-many-digits"],
)
async def test_json_bodies_the_parser_cannot_take_answer_422_not_400(body: bytes) -> None:
    """Found by the fuzz run: FastAPI answered these 400 "error parsing the body", a status
    the API does not declare."""
    async with client(echo_app()) as c:
        r = await c.post("/echo", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "json_invalid"


async def test_nan_on_a_product_route_is_refused(tmp_path: Path) -> None:
    """`title` is parsed leniently (an unknown value clears it): NaN would be taken as none."""
    async with desk_app(tmp_path) as env:
        agent = await env.login("agent1001", "agent-1001")
        body = '{"numbers": ["13800138000"], "title": NaN}'
        r = await env.client.post("/crm/customers", content=body, headers={
            **agent, "Content-Type": "application/json"})
        assert r.status_code == 422, r.text


async def chunks(n: int, size: int, sent: list[int]) -> AsyncIterator[bytes]:
    for _ in range(n):
        sent.append(size)
        yield b"1" * size


async def test_bodies_over_the_limit_answer_413_from_content_length() -> None:
    async with client(echo_app(max_body_bytes=4096)) as c:
        r = await c.post("/echo", content=b"{" + b" " * 5000 + b"}",
                         headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json() == {"error": "body_too_large", "detail": "request body exceeds 4096 bytes"}
        r = await c.post("/echo", json={"x": "y" * 4000})
        assert r.status_code == 200


async def test_streamed_bodies_over_the_limit_answer_413_before_being_read_whole(
    tmp_path: Path,
) -> None:
    async with desk_app(tmp_path, http=HttpSettings(max_body_bytes=64 * 1024)) as env:
        admin = await env.login("admin", "admin-pw")
        # chunked (no Content-Length), to a route that reads its body itself (CSV import) and
        # to a JSON route (read by the strict-JSON guard): both stop at the limit
        for path, kind in (("/crm/import", "text/csv"), ("/crm/customers", "application/json")):
            sent: list[int] = []
            r = await env.client.post(path, content=chunks(100, 16 * 1024, sent),
                                      headers={**admin, "Content-Type": kind})
            assert r.status_code == 413, (path, r.text)
            assert r.json()["error"] == "body_too_large"
            assert sum(sent) <= 64 * 1024 + 16 * 1024, (path, sum(sent))  # not the 1.6 MB
        # under the limit, streamed: imported
        sent = []
        csv = b"number,name\n13800138000,Li\n"
        r = await env.client.post("/crm/import", content=_one(csv),
                                  headers={**admin, "Content-Type": "text/csv"})
        assert r.status_code == 200, r.text


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def echo_size(r: httpx.Response) -> int:
    return max(len(json.dumps(e.get("input"), ensure_ascii=False)) for e in r.json()["detail"])


async def test_a_422_never_echoes_megabytes_back(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        agent = await env.login("agent1001", "agent-1001")
        # one huge field: its input is cut
        r = await env.client.post("/crm/customers", headers=agent,
                                  json={"numbers": ["13800138000"], "name": "名" * 300_000})
        assert r.status_code == 422
        assert len(r.content) < 4096
        assert echo_size(r) <= MAX_ECHO_CHARS + 10
        # a huge body missing a field: pydantic's input is the whole body; cut
        r = await env.client.post("/crm/customers", headers=agent, json={"notes": "n" * 800_000})
        assert r.status_code == 422
        assert len(r.content) < 4096, len(r.content)
        # thousands of errors: capped
        many = {f"k{i}": "v" * 90 for i in range(5000)}
        r = await env.client.post("/crm/customers", headers=agent, json={"numbers": ["1"], **many})
        assert r.status_code == 422
        assert len(r.json()["detail"]) == MAX_ERRORS + 1
        assert r.json()["detail"][-1]["type"] == "too_many_errors"
        assert len(r.content) < 30_000


PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def csp(r: httpx.Response) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in r.headers["content-security-policy"].split(";")
    }


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with desk_app(tmp_path, ui=True) as env:
        c = env.client
        responses = [
            await c.get("/desk/index.html"), await c.get("/desk/supervisor.html"),
            await c.get("/desk/js/desk.js"), await c.get("/auth/me"),  # 401
            await c.post("/auth/login", json={"username": "admin", "password": "admin-pw"}),
            await c.get("/nowhere"), await c.post("/crm/customers", json={}),
        ]
        for r in responses:
            for name, value in PAGE_HEADERS.items():
                assert r.headers.get(name) == value, (r.request.url, name)
            policy = csp(r)
            assert policy["default-src"] == "'self'"
            assert policy["script-src"] == "'self'"  # no inline scripts, no eval
            assert policy["style-src"] == "'self'"
            assert policy["frame-ancestors"] == "'none'"
            assert policy["object-src"] == "'none'"


async def test_the_api_docs_page_runs_only_its_own_inline_script(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        r = await c.get("/docs")
        assert r.status_code == 200
        policy = csp(r)
        scripts = re.findall(r"<script>(.*?)</script>", r.text, re.S)
        assert scripts
        for script in scripts:
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy["script-src"]
        assert "'unsafe-inline'" not in policy["script-src"]
        assert policy["frame-ancestors"] == "'none'"
        r = await c.get("/openapi.json")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_metrics_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    token = "metrics-token-0123456789"
    async with full_app(tmp_path, http={"metrics_token": token}) as env, client(env.app) as c:
        assert (await c.get("/metrics")).status_code == 401
        r = await c.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert (await c.get("/metrics", headers=env.bearer("admin"))).status_code == 401
        r = await c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert "cti_" in r.text or "python_gc" in r.text
        # other routes do not care about that token
        assert (await c.get("/health")).status_code == 200


async def test_metrics_stay_open_without_a_token(tmp_path: Path) -> None:
    async with full_app(tmp_path) as env, client(env.app) as c:
        assert (await c.get("/metrics")).status_code == 200


async def test_a_wrap_up_naming_no_customer_answers_404_not_500(tmp_path: Path) -> None:
    """The disposition's customer id is a foreign key: an unknown one was a database
    IntegrityError (500)."""
    async with desk_app(tmp_path) as env:
        agent = await env.login("agent1001", "agent-1001")
        await env.desk.screen_pop.on_routing_event(CallOffered(
            call_id="c1", agent_id="1001", queue="sales", waited_s=1.0, attributes={},
            at=datetime.now(UTC), offer_id="o1", caller_number="+49305551"))
        r = await env.client.post("/calls/c1/disposition", headers=agent,
                                  json={"outcome": "resolved", "customer_id": 999})
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "not_found"
        r = await env.client.post("/calls/c1/disposition", headers=agent,
                                  json={"outcome": "resolved"})
        assert r.status_code == 200, r.text
