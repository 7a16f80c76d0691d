"""The external CRM adapter: URL template, mapping, 404, errors, TTL cache, shared requests."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from cti.features.crm.external import ExternalCrm, ExternalCrmSettings, ExternalCrmUnavailable
from cti.platform.clock import FakeClock

SETTINGS = ExternalCrmSettings(
    url_template="https://crm.example/api/contacts/{digits}?e164={number}",
    mapping={"name": "name", "tier": "level"},
    timeout_s=0.2,
    cache_ttl_s=60,
    headers={"X-Api-Key": "k"},
)


def crm(handler: Any, clock: FakeClock | None = None) -> tuple[ExternalCrm, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return ExternalCrm(SETTINGS, client=client, clock=clock or FakeClock()), seen


async def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"name": "Anna", "level": "Gold"})


async def test_url_template_and_headers_are_used() -> None:
    adapter, seen = crm(ok)
    found = await adapter.lookup("+49305551")
    assert found is not None
    assert (found.name, found.tier, found.numbers) == ("Anna", "gold", ("+49305551",))
    assert str(seen[0].url) == "https://crm.example/api/contacts/49305551?e164=%2B49305551"
    assert seen[0].headers["X-Api-Key"] == "k"
    await adapter._client.aclose()


async def test_not_found_is_no_customer_and_is_cached() -> None:
    async def missing(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    adapter, seen = crm(missing)
    assert await adapter.lookup("+49305551") is None
    assert await adapter.lookup("+49305551") is None
    assert len(seen) == 1
    await adapter._client.aclose()


async def test_cache_expires_after_ttl() -> None:
    clock = FakeClock()
    adapter, seen = crm(ok, clock)
    await adapter.lookup("+49305551")
    assert adapter.cached("+49305551")[0]
    clock.advance(59)
    await adapter.lookup("+49305551")
    assert len(seen) == 1
    clock.advance(2)
    assert not adapter.cached("+49305551")[0]
    await adapter.lookup("+49305551")
    assert len(seen) == 2
    await adapter._client.aclose()


async def test_concurrent_lookups_of_one_number_share_one_request() -> None:
    async def slow(_r: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json={"name": "Anna"})

    adapter, seen = crm(slow)
    results = await asyncio.gather(*(adapter.lookup("+49305551") for _ in range(5)))
    assert {r.name for r in results if r} == {"Anna"}
    assert len(seen) == 1
    await adapter._client.aclose()


@pytest.mark.parametrize(
    ("handler_kind", "message"),
    [("slow", "timed out after 0.2s"), ("refused", "unreachable"), ("500", "answered 500"),
     ("html", "non-JSON")],
)
async def test_failures_become_external_crm_unavailable(handler_kind: str, message: str) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if handler_kind == "slow":
            await asyncio.sleep(1)
        if handler_kind == "refused":
            raise httpx.ConnectError("refused", request=request)
        if handler_kind == "500":
            return httpx.Response(500)
        return httpx.Response(200, text="<html>")

    adapter, _ = crm(handler)
    with pytest.raises(ExternalCrmUnavailable, match=message):
        await adapter.lookup("+49305551")
    assert not adapter.cached("+49305551")[0]  # failures are not cached
    await adapter._client.aclose()


@pytest.mark.parametrize(
    ("update", "reason"),
    [({"url_template": "https://crm/x"}, "must contain {number} or {digits}"),
     ({"url_template": "ftp://crm/{number}"}, "http(s) URL"),
     ({"mapping": {"age": "a"}}, "unknown fields ['age']"),
     ({"timeout_s": 0}, "greater than 0")],
)
def test_bad_settings_are_rejected_with_reason(update: dict[str, Any], reason: str) -> None:
    data = {**SETTINGS.model_dump(), **update}
    with pytest.raises(ValidationError, match=re.escape(reason)):
        ExternalCrmSettings.model_validate(data)
