"""Campaign summaries (a campaign's numbers kept at write time) and the outbox index its page lists by (#25)

Revision ID: b8d4f0a2c3e5
Revises: a7c3e9f1b2d4
Create Date: 2026-12-05 06:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'b8d4f0a2c3e5'
down_revision = 'a7c3e9f1b2d4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'campaign_summaries',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lines_changed', sa.Boolean(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('campaign_id'),
    )
    # The campaign page lists its recipients a page at a time in id order: without it, a sort of 100k rows.
    op.create_index('ix_outbox_campaign_id', 'outbox', ['campaign_id', 'id'])


def downgrade():
    op.drop_index('ix_outbox_campaign_id', table_name='outbox')
    op.drop_table('campaign_summaries')
