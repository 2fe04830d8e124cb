"""customer lifecycle: one status per customer (New, Active, At risk, Lapsing, Lost), filtered per store

Revision ID: 9a4e6c1b2d73
Revises: 5c2d9e7a4f10
Create Date: 2026-12-05 09:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = '9a4e6c1b2d73'
down_revision = '5c2d9e7a4f10'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lifecycle', sa.String(length=10), nullable=True))
        batch_op.create_index('ix_customers_store_lifecycle', ['store_id', 'lifecycle'], unique=False)


def downgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_store_lifecycle')
        batch_op.drop_column('lifecycle')
