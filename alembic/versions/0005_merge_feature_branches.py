"""merge feature branches

Revision ID: 0005
Revises: 0002, 0003, 0004


"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import cti.platform.db.base  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = ('0002', '0003', '0004')
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
