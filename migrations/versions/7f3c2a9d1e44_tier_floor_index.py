"""tier floor index: a tier's lowest spend is one index seek

Revision ID: 7f3c2a9d1e44
Revises: 2dcad0186379
Create Date: 2026-11-22 06:30:00

"""
from alembic import op

revision = '7f3c2a9d1e44'
down_revision = '2dcad0186379'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_tier_floor', ['tier', 'erased_at', 'monetary'], unique=False)


def downgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_tier_floor')
