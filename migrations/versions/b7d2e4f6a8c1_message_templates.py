"""message templates: admins' versions of the library's texts (win-back, tier-up…), chain-wide or per store

The default texts live in code (portal/services/campaigns/templates.py); this table holds only changes.

Revision ID: b7d2e4f6a8c1
Revises: c5e8a1d3f207
Create Date: 2026-12-05 03:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'b7d2e4f6a8c1'
down_revision = 'c5e8a1d3f207'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'message_templates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=32), nullable=False),
        sa.Column('store_id', sa.Integer(), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('purpose', 'store_id', name='uq_message_template_purpose_store'),
    )


def downgrade():
    op.drop_table('message_templates')
