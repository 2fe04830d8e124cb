"""flows: automations per store (flows, flow_entries), campaigns.flow_id, customers.birthday, sms_events read flag

Revision ID: e4f1a7c3b925
Revises: d8a3f5b1c694
Create Date: 2026-12-05 03:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'e4f1a7c3b925'
down_revision = 'd8a3f5b1c694'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'flows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('store_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('template', sa.Text(), nullable=False),
        sa.Column('cooldown_days', sa.Integer(), nullable=False),
        sa.Column('params', sa.JSON(), nullable=True),
        sa.Column('control_share', sa.Float(), nullable=False),
        sa.Column('daily_limit', sa.Integer(), nullable=False),
        sa.Column('expiry_days', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=254), nullable=True),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('store_id', 'kind', name='uq_flow_store_kind'),
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flow_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_campaigns_flow_id', ['flow_id'], unique=False)
        batch_op.create_foreign_key('fk_campaigns_flow_id', 'flows', ['flow_id'], ['id'])
    op.create_table(
        'flow_entries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('flow_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('episode_key', sa.String(length=60), nullable=False),
        sa.Column('group', sa.String(length=8), nullable=False),
        sa.Column('entered_on', sa.Date(), nullable=False),
        sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('outbox_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['flow_id'], ['flows.id']),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id']),
        sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('flow_id', 'customer_id', 'episode_key', name='uq_flow_entry_episode'),
    )
    op.create_index('ix_flow_entries_customer_id', 'flow_entries', ['customer_id'], unique=False)
    op.create_index('ix_flow_entries_flow_day', 'flow_entries', ['flow_id', 'entered_on'], unique=False)
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birthday', sa.Date(), nullable=True))
    with op.batch_alter_table('sms_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('read_by', sa.String(length=254), nullable=True))
        batch_op.create_index('ix_sms_events_kind_read', ['kind', 'read_at'], unique=False)


def downgrade():
    with op.batch_alter_table('sms_events', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_events_kind_read')
        batch_op.drop_column('read_by')
        batch_op.drop_column('read_at')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('birthday')
    op.drop_index('ix_flow_entries_flow_day', table_name='flow_entries')
    op.drop_index('ix_flow_entries_customer_id', table_name='flow_entries')
    op.drop_table('flow_entries')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_constraint('fk_campaigns_flow_id', type_='foreignkey')
        batch_op.drop_index('ix_campaigns_flow_id')
        batch_op.drop_column('flow_id')
    op.drop_table('flows')
