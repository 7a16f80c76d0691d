"""Lookup of a caller in an external CRM over HTTP: a URL template, a field mapping, a timeout and
a TTL cache. Failures become `ExternalCrmUnavailable`; the caller decides what to do without it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cti.domain.crm import EXTERNAL_FIELDS, Customer, customer_from_external
from cti.platform.clock import Clock, SystemClock
from cti.platform.errors import CtiError


class ExternalCrmUnavailable(CtiError):
    """The external CRM did not answer in time or answered with an error."""

    error_id = "external_crm_unavailable"
    http_status = 504


class ExternalCrmSettings(BaseModel):
    """`url_template` may use {number} (E.164, URL-quoted) and {digits} (E.164 without '+').
    `mapping` maps our fields (name, surname, title, tier, company, notes) to dotted paths in the
    JSON answer, e.g. {"surname": "contact.lastName", "notes": "tickets.0.subject"}."""

    model_config = ConfigDict(extra="forbid")

    url_template: str
    mapping: dict[str, str]
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    cache_ttl_s: float = Field(default=300.0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url_template")
    @classmethod
    def _has_placeholder(cls, v: str) -> str:
        if "{number}" not in v and "{digits}" not in v:
            raise ValueError("url_template must contain {number} or {digits}")
        if not v.startswith(("http://", "https://")):
            raise ValueError("url_template must be an http(s) URL")
        return v

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(EXTERNAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {list(EXTERNAL_FIELDS)}")
        return v


@dataclass(slots=True)
class _Cached:
    value: Customer | None
    until: float


class ExternalCrm:
    def __init__(
        self,
        settings: ExternalCrmSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._client = client or httpx.AsyncClient()
        self._own_client = client is None
        self._clock = clock or SystemClock()
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[Customer | None]] = {}

    def url_for(self, number: str) -> str:
        return self.settings.url_template.format(
            number=quote(number, safe=""), digits=number.lstrip("+")
        )

    def cached(self, number: str) -> tuple[bool, Customer | None]:
        """(hit, value) without any I/O; lets the pop use a fresh answer at once."""
        entry = self._cache.get(number)
        if entry is not None and entry.until > self._clock.monotonic():
            return True, entry.value
        return False, None

    async def lookup(self, number: str) -> Customer | None:
        """The customer the external CRM has for `number` (E.164), None if it has none (404 or
        an answer without mapped fields). Concurrent lookups of one number share one request."""
        hit, value = self.cached(number)
        if hit:
            return value
        pending = self._inflight.get(number)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Customer | None] = asyncio.get_running_loop().create_future()
        self._inflight[number] = future
        try:
            result = await self._fetch(number)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        else:
            future.set_result(result)
            until = self._clock.monotonic() + self.settings.cache_ttl_s
            self._cache[number] = _Cached(result, until)
            return result
        finally:
            self._inflight.pop(number, None)

    async def _fetch(self, number: str) -> Customer | None:
        url = self.url_for(number)
        try:
            # httpx's timeout is per phase; the pop needs a bound on the whole exchange.
            async with asyncio.timeout(self.settings.timeout_s):
                response = await self._client.get(
                    url, headers=self.settings.headers, timeout=self.settings.timeout_s
                )
        except (TimeoutError, httpx.TimeoutException):
            raise ExternalCrmUnavailable(
                f"external CRM timed out after {self.settings.timeout_s}s: {url}"
            ) from None
        except httpx.HTTPError as exc:
            raise ExternalCrmUnavailable(f"external CRM unreachable: {url}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ExternalCrmUnavailable(f"external CRM answered {response.status_code}: {url}")
        try:
            payload: Any = response.json()
        except ValueError:
            raise ExternalCrmUnavailable(f"external CRM answered non-JSON: {url}") from None
        return customer_from_external(payload, self.settings.mapping, number)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
