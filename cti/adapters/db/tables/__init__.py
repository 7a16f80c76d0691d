"""All tables, imported so Base.metadata knows them (Alembic autogenerate, tests)."""

from cti.adapters.db.tables import calls as calls
from cti.adapters.db.tables import crm as crm
from cti.adapters.db.tables import fallback as fallback
from cti.adapters.db.tables import ivr as ivr
from cti.adapters.db.tables import routing as routing
from cti.adapters.db.tables import users as users

__all__ = ["calls", "crm", "fallback", "ivr", "routing", "users"]
