"""All tables, imported so Base.metadata knows them (Alembic autogenerate, tests)."""

from cti.adapters.db.tables import calls as calls

__all__ = ["calls"]
