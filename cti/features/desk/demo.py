"""Demo data for the agent desk: a few customers (one VIP with surname and title) and the users
agent 1001..1003 (password agent-100N), supervisor (supervisor-pw), admin (admin-pw).
Idempotent: running it again updates the same rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.domain.crm import Customer, Title
from cti.features.auth.service import NewUser, Role, UserDirectory
from cti.features.crm.storage import CustomerRepository

DEMO_CUSTOMERS = (
    Customer(id=None, numbers=("+49305551",), name="王伟", surname="王", title=Title.MR,
             tier="vip", company="柏林贸易有限公司", notes="VIP since 2019; open complaint #4711"),
    Customer(id=None, numbers=("+8613800138000",), name="李娜", surname="李", title=Title.MS,
             tier="gold", company="示例科技", notes="prefers callbacks in the morning"),
    Customer(id=None, numbers=("+49305552",), name="Anna Schmidt", surname="Schmidt",
             title=Title.MS, tier="standard", company="ACME GmbH", notes=""),
    Customer(id=None, numbers=("+861012345678",), name="张强", tier="standard",
             notes="no title known: standard greeting"),
)

DEMO_USERS = (
    *(NewUser(f"agent{n}", f"agent-{n}", Role.AGENT, str(n), f"Agent {n}", "zh")
      for n in (1001, 1002, 1003)),
    NewUser("supervisor", "supervisor-pw", Role.SUPERVISOR, None, "Supervisor", "zh"),
    NewUser("admin", "admin-pw", Role.ADMIN, None, "Administrator", "en"),
)


async def seed_demo_desk(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Load the demo customers and users; returns (customers, users) written."""
    outcome = await CustomerRepository(sessions).import_batch(DEMO_CUSTOMERS)
    users = UserDirectory(sessions)
    for user in DEMO_USERS:
        await users.create(user, replace_password=True)
    return outcome.added + outcome.updated, len(DEMO_USERS)
