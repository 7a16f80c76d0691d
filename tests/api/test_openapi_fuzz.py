"""Fuzz every operation of the OpenAPI document against the product's app, in process.

Schemathesis generates valid and invalid requests from the document and checks each answer:
no server error (5xx), a status code the operation declares, a content type and body that
match the declared response, invalid requests refused, auth not ignored. The app is
cti.app.create_app over a real Service (built, not started: no PBX) on a temporary SQLite DB,
with the token of an admin who is also an agent, so the role-guarded routes run their code
instead of stopping at 401/403. Every route's service is there, so no answer is a 503
service_unavailable (a route reaching the PBX would get a 503 telephony_unavailable: with no
live calls none does, and such a 5xx would fail the run).

Bounded: EXAMPLES examples per operation and generation mode, a fixed seed (derandomize), no
shrinking (the first failing example is reported as found): ~20 s on an idle 2-core machine.

Schemathesis's own pytest integration (`from_fixture`) does not run under pytest 9
(`Function._nodeid`), so the operations are walked here, and every failure is reported at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import Receive, Scope, Send

from cti.features.auth.service import NewUser, Principal, Role, Tokens
from cti.platform.settings import Settings
from tests.api.desk_app import SECRET
from tests.api.full_app import FullApp, build_full_app, prepare_db, settings_for

EXAMPLES = 20
FUZZER = NewUser("chief", "chief-pw", Role.ADMIN, agent_id="1003")
BUDGET_S = 180  # a hard stop far above the usual time (57 operations): the run must stay bounded
# Not checked: that every schema-valid request is accepted (schemathesis's
# positive_data_acceptance). Some rules are not JSON Schema: a pause needs a reason, an agent
# user needs an agent id, a phone number must be a possible number of its region, skills must
# be the routing rules' skills, a transfer target must be an agent/queue id of that type. Such
# requests are answered 422 (a declared status with its declared body) by design.
NOT_CHECKED = [positive_data_acceptance]
# Nothing a schema calls invalid: any text is a CSV file to the importer (bad rows are reported
# line by line in a 200). Negative cases are not generated for these.
TEXT_BODIES = {"POST /crm/import"}


class FreshService:
    """The ASGI app under test: its lifespan (run on schemathesis's event-loop thread, which
    serves every request) builds a Service over the database, and stops it at the end."""

    def __init__(self, settings: Settings, users: dict[str, Principal]) -> None:
        self.settings = settings
        self.users = users
        self.env: FullApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.env is not None, "requests come after the lifespan's startup"
        await self.env.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.env = build_full_app(self.settings, self.users)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.env is not None:
                    await self.env.service.stop()
                    self.env = None
                await send({"type": "lifespan.shutdown.complete"})
                return


def test_every_operation_answers_within_its_schema(tmp_path: Path) -> None:
    config = settings_for(tmp_path)
    # an admin who is also an agent: reaches the admin routes and the agent's own (/agents/me)
    users = asyncio.run(prepare_db(config.database_url, FUZZER))
    admin = Tokens(SECRET).issue(users[FUZZER.username]).token  # as a login's is signed
    headers = {"Authorization": f"Bearer {admin}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", FreshService(config, users))
    # Unknown query parameters are ignored, as HTTP APIs do, not refused: none are generated.
    schema.config.generation.update(allow_extra_parameters=False)
    failures: dict[str, str] = {}
    operations = 0
    started = time.monotonic()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            modes = [GenerationMode.POSITIVE]
            if operation.label not in TEXT_BODIES:
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                assert time.monotonic() - started < BUDGET_S, "the fuzz run is over its budget"

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def fuzz(case: schemathesis.Case) -> None:
                    case.call_and_validate(headers=headers, excluded_checks=NOT_CHECKED)

                try:
                    fuzz()
                except Unsatisfiable:  # e.g. no parameters at all: nothing invalid to send
                    print(f"{operation.label} [{mode.value}]: no cases to generate")
                except (Exception, BaseExceptionGroup) as exc:  # all reported together below
                    failures[f"{operation.label} [{mode.value}]"] = str(exc)
    finally:
        shutdown_lifespans()
    elapsed = time.monotonic() - started
    print(f"fuzzed {operations} operations in {elapsed:.1f} s")
    assert operations >= 30, operations
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
