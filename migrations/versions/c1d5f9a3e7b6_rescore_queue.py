"""The incremental rescore's queue (customers named by API purchase batches, rescored by a coalescing job)

Revision ID: c1d5f9a3e7b6
Revises: b8d4f0a2c3e5
Create Date: 2026-12-05 06:40:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'c1d5f9a3e7b6'
down_revision = 'b8d4f0a2c3e5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'rescore_queue',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('customer_id'),
    )
    with op.batch_alter_table('rescore_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rescore_queue_queued_at'), ['queued_at'], unique=False)


def downgrade():
    with op.batch_alter_table('rescore_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rescore_queue_queued_at'))
    op.drop_table('rescore_queue')
