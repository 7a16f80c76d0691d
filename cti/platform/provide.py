"""How HTTP routes reach services: one registry on the app, keyed by the service's type.

A feature's routes declare what they need as a typed dependency,

    AcdDep = Annotated[Acd, Depends(provide(Acd))]

and the app is given its services once (`register(app, acd, runner, ...)`). A route whose
service this process was built without answers 503 `service_unavailable`, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from cti.platform.errors import CtiError

T = TypeVar("T")


class ServiceMissing(CtiError):
    """A route needs a service this process was not built with."""

    error_id = "service_unavailable"
    http_status = 503


def register(app: FastAPI, *services: object) -> None:
    """Make `services` reachable from routes by their types (a route asking for a base class
    gets a registered subclass)."""
    registry: dict[type[Any], object] | None = getattr(app.state, "services", None)
    if registry is None:
        registry = app.state.services = {}
    for service in services:
        registry[type(service)] = service


def provide(kind: type[T]) -> Callable[[HTTPConnection], T]:
    """A FastAPI dependency returning the registered service of type `kind` (for requests
    and WebSockets alike)."""

    def _get(conn: HTTPConnection) -> T:
        registry: dict[type[Any], object] = getattr(conn.app.state, "services", {})
        service = registry.get(kind)
        if service is None:
            for registered, candidate in registry.items():
                if issubclass(registered, kind):
                    service = candidate
                    break
        if service is None:
            raise ServiceMissing(f"{kind.__name__} is not available on this service")
        return service  # type: ignore[return-value]

    _get.__name__ = f"provide_{kind.__name__}"
    return _get
