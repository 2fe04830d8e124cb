"""mail: users' e-mail preferences, alert events, the mail outbox and the hourly slots

Revision ID: d8a3f5b1c694
Revises: b7d2e4f6a8c1
Create Date: 2026-12-05 03:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'd8a3f5b1c694'
down_revision = 'b7d2e4f6a8c1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'mail_preferences',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('risk', sa.Boolean(), nullable=False),
        sa.Column('failures', sa.Boolean(), nullable=False),
        sa.Column('paused', sa.Boolean(), nullable=False),
        sa.Column('optouts', sa.Boolean(), nullable=False),
        sa.Column('digest_weekday', sa.Integer(), nullable=False),
        sa.Column('digest_hour', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('user_id'),
    )
    op.create_table(
        'mail_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('event_key', sa.String(length=120), nullable=False),
        sa.Column('store_id', sa.Integer(), nullable=True),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'event_key', name='uq_mail_event_kind_key'),
    )
    with op.batch_alter_table('mail_events', schema=None) as batch_op:
        batch_op.create_index('ix_mail_events_created_at', ['created_at'], unique=False)
    op.create_table(
        'mail_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('to_address', sa.String(length=254), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('event_key', sa.String(length=120), nullable=False),
        sa.Column('store_id', sa.Integer(), nullable=True),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body_text', sa.Text(), nullable=False),
        sa.Column('body_html', sa.Text(), nullable=False),
        sa.Column('unsubscribe_url', sa.String(length=600), nullable=True),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_by', sa.String(length=80), nullable=True),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.Column('message_id', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id']),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'kind', 'event_key', name='uq_mail_user_kind_key'),
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_mail_outbox_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_mail_outbox_status', ['status'], unique=False)
        batch_op.create_index('ix_mail_outbox_user_id', ['user_id'], unique=False)
    op.create_table(
        'mail_slots',
        sa.Column('slot', sa.String(length=20), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('slot'),
    )


def downgrade():
    op.drop_table('mail_slots')
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_outbox_user_id')
        batch_op.drop_index('ix_mail_outbox_status')
        batch_op.drop_index('ix_mail_outbox_created_at')
    op.drop_table('mail_outbox')
    with op.batch_alter_table('mail_events', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_events_created_at')
    op.drop_table('mail_events')
    op.drop_table('mail_preferences')
