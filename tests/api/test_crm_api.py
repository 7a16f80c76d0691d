"""Customer API: search, read, create, update, lookup with the external CRM, CSV import."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from desk_app import desk_app

from cti.features.crm.external import ExternalCrmSettings
from cti.features.desk.demo import seed_demo_desk

EXTERNAL = ExternalCrmSettings(
    url_template="http://crm.example/contacts?phone={number}",
    mapping={"name": "contact.name", "surname": "contact.last", "tier": "segment",
             "notes": "ticket"},
    timeout_s=0.2,
)


def external_crm(delay_s: float, payload: dict[str, Any] | None, status: int = 200) -> Any:
    """An external CRM answering after `delay_s` (over httpx's transport interface)."""
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        await asyncio.sleep(delay_s)
        return httpx.Response(status, json=payload or {})

    transport = httpx.MockTransport(handler)
    transport.seen = seen  # type: ignore[attr-defined]
    return transport


async def test_search_finds_customers_by_surname_name_and_number(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        await seed_demo_desk(env.desk.sessions)
        h = await env.login("agent1001", "agent-1001")
        for q, name in [("王", "王伟"), ("Schmidt", "Anna Schmidt"), ("030 5551", None),
                        ("+49305551", "王伟"), ("138 0013 8000", "李娜")]:
            r = await env.client.get("/crm/customers", params={"q": q}, headers=h)
            assert r.status_code == 200
            names = [c["name"] for c in r.json()]
            if name:
                assert name in names, (q, names)


async def test_customer_api_needs_login(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        assert (await env.client.get("/crm/customers")).status_code == 401


async def test_add_get_update_customer(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.post(
            "/crm/customers", headers=h,
            json={"numbers": ["0049 30 5559"], "name": "赵六", "surname": "赵", "title": "先生"},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert (created["numbers"], created["title"], created["tier"]) == (
            ["+49305559"], "mr", "standard")
        r = await env.client.patch(f"/crm/customers/{created['id']}", headers=h,
                                   json={"notes": "call back Monday", "title": ""})
        assert r.status_code == 200
        assert (r.json()["notes"], r.json()["title"], r.json()["name"]) == (
            "call back Monday", None, "赵六")
        r = await env.client.get(f"/crm/customers/{created['id']}", headers=h)
        assert r.json()["history"] == []
        assert (await env.client.get("/crm/customers/999", headers=h)).status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [({"numbers": ["abc"]}, "not a phone number"),
     ({"numbers": []}, "at least 1"),
     ({"numbers": ["+49305551"], "title": "dr"}, "unknown title"),
     ({"numbers": ["+49305551"], "tier": "v i p"}, "pattern"),
     ({"numbers": ["+49305551"], "age": 3}, "extra")],
)
async def test_bad_customer_input_is_422_with_reasons(
    tmp_path: Path, body: dict[str, Any], reason: str
) -> None:
    async with desk_app(tmp_path) as env:
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.post("/crm/customers", headers=h, json=body)
        assert r.status_code == 422
        assert reason in r.text


async def test_a_number_belongs_to_one_customer(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        await seed_demo_desk(env.desk.sessions)
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.post("/crm/customers", headers=h, json={"numbers": ["+49305551"]})
        assert r.status_code == 409


async def test_lookup_merges_the_external_crm_answer(tmp_path: Path) -> None:
    transport = external_crm(0.0, {"contact": {"name": "Wang Wei"}, "ticket": "router down"})
    async with desk_app(tmp_path, external_crm=EXTERNAL, external_transport=transport) as env:
        await seed_demo_desk(env.desk.sessions)
        h = await env.login("agent1001", "agent-1001")
        r = await env.client.get("/crm/lookup", params={"number": "0049305551"}, headers=h)
        body = r.json()
        assert body["customer"]["name"] == "Wang Wei"
        assert body["customer"]["surname"] == "王"  # local fills what the external lacks
        assert body["customer"]["tier"] == "vip"
        assert "router down" in body["customer"]["notes"]
        assert body["sources"] == ["local", "external"]
        assert transport.seen == ["http://crm.example/contacts?phone=%2B49305551"]


async def test_lookup_falls_back_to_local_when_external_crm_times_out(tmp_path: Path) -> None:
    transport = external_crm(2.0, {"contact": {"name": "too late"}})
    async with desk_app(tmp_path, external_crm=EXTERNAL, external_transport=transport) as env:
        await seed_demo_desk(env.desk.sessions)
        h = await env.login("agent1001", "agent-1001")
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await env.client.get("/crm/lookup", params={"number": "+49305551"}, headers=h)
        elapsed = loop.time() - started
        body = r.json()
        assert r.status_code == 200
        assert body["customer"]["name"] == "王伟"
        assert "timed out" in body["external_error"]
        assert elapsed < 1.0  # bounded by the 0.2 s timeout, not the CRM's 2 s


async def test_lookup_falls_back_when_external_crm_fails(tmp_path: Path) -> None:
    transport = external_crm(0.0, None, status=500)
    async with desk_app(tmp_path, external_crm=EXTERNAL, external_transport=transport) as env:
        await seed_demo_desk(env.desk.sessions)
        h = await env.login("agent1001", "agent-1001")
        body = (await env.client.get("/crm/lookup", params={"number": "+49305551"},
                                     headers=h)).json()
        assert body["customer"]["name"] == "王伟"
        assert "answered 500" in body["external_error"]


CSV = (
    "numbers,name,surname,title,tier,company,notes\n"
    "+49305551,王伟,王,先生,vip,Berlin Trade,\n"
    "not-a-number,Bad,,,,,\n"
    "13800138000;+49305553,李娜,李,小姐,gold,,\n"
    "+49305554,X,,doctor,,,\n"
    "\n"
    "+49305555,Y,,,standard,,\n"
)


async def test_csv_import_loads_good_rows_and_reports_bad_lines(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        admin = await env.login("admin", "admin-pw")
        r = await env.client.post("/crm/import", headers={**admin, "Content-Type": "text/csv"},
                                  content=CSV.encode())
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["added"], body["updated"]) == (3, 0)
        assert [x["line"] for x in body["rejected"]] == [3, 5]
        assert "not a phone number" in body["rejected"][0]["reason"]
        assert "title" in body["rejected"][1]["reason"]
        again = await env.client.post("/crm/import", headers=admin, content=CSV.encode())
        assert (again.json()["added"], again.json()["updated"]) == (0, 3)
        assert await env.desk.customers.count() == 3


async def test_csv_import_with_a_bad_header_loads_nothing(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        admin = await env.login("admin", "admin-pw")
        r = await env.client.post("/crm/import", headers=admin,
                                  content=b"phone,name\n+49305551,x\n")
        assert r.json()["rejected"] == [{"line": 1, "reason": "missing column 'numbers'; "
                                         "unknown column 'phone' (known: numbers, name, surname, "
                                         "title, tier, company, notes)"}]
        assert await env.desk.customers.count() == 0


async def test_csv_import_needs_admin(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        h = await env.login("supervisor", "supervisor-pw")
        r = await env.client.post("/crm/import", headers=h, content=CSV.encode())
        assert r.status_code == 403


async def test_only_supervisors_change_a_customers_tier(tmp_path: Path) -> None:
    async with desk_app(tmp_path) as env:
        agent = await env.login("agent1001", "agent-1001")
        sup = await env.login("supervisor", "supervisor-pw")
        # an agent may not create a customer with a tier other than the default ...
        r = await env.client.post("/crm/customers", headers=agent,
                                  json={"numbers": ["+49305559"], "tier": "vip"})
        assert r.status_code == 403, r.text
        assert "supervisor" in r.json()["detail"]
        r = await env.client.post("/crm/customers", headers=sup,
                                  json={"numbers": ["+49305559"], "name": "赵六", "tier": "VIP"})
        assert r.status_code == 201, r.text
        assert r.json()["tier"] == "vip"
        url = f"/crm/customers/{r.json()['id']}"
        # ... nor change it
        r = await env.client.patch(url, headers=agent, json={"tier": "standard"})
        assert r.status_code == 403
        assert (await env.client.get(url, headers=agent)).json()["tier"] == "vip"
        # the rest stays theirs to edit, also when the unchanged tier comes along (a form)
        r = await env.client.patch(url, headers=agent, json={"notes": "n1", "tier": "VIP"})
        assert r.status_code == 200, r.text
        assert (r.json()["notes"], r.json()["tier"]) == ("n1", "vip")
        r = await env.client.patch(url, headers=sup, json={"tier": "gold"})
        assert r.status_code == 200
        assert r.json()["tier"] == "gold"
