"""Customer summaries kept at write time: one stored cube per store (issue #25)

Revision ID: a7c3e9f1b2d4
Revises: f6a2c8e4b913
Create Date: 2026-12-05 06:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'a7c3e9f1b2d4'
down_revision = 'f6a2c8e4b913'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'customer_summaries',
        sa.Column('store_id', sa.Integer(), nullable=False),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('store_id'),
    )


def downgrade():
    op.drop_table('customer_summaries')
