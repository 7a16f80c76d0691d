"""All tables, imported so Base.metadata knows them (Alembic autogenerate, tests)."""

from cti.platform.db.tables import callbacks as callbacks
from cti.platform.db.tables import calls as calls
from cti.platform.db.tables import crm as crm
from cti.platform.db.tables import evaluations as evaluations
from cti.platform.db.tables import events as events
from cti.platform.db.tables import fallback as fallback
from cti.platform.db.tables import handover as handover
from cti.platform.db.tables import ivr as ivr
from cti.platform.db.tables import knowledge as knowledge
from cti.platform.db.tables import messages as messages
from cti.platform.db.tables import recordings as recordings
from cti.platform.db.tables import report_rollups as report_rollups
from cti.platform.db.tables import routing as routing
from cti.platform.db.tables import surveys as surveys
from cti.platform.db.tables import users as users
from cti.platform.db.tables import work_orders as work_orders

__all__ = ["callbacks", "calls", "crm", "evaluations", "events", "fallback", "handover", "ivr",
           "knowledge", "messages", "recordings", "report_rollups", "routing", "surveys",
           "users", "work_orders"]
