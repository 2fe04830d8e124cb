"""customers.p_return_12m: the chance of buying again within 12 months, shown instead of the latent P(alive)

Revision ID: b1e7c4a90d21
Revises: 9a4e6c1b2d73
Create Date: 2026-12-05 03:10:00

"""

import sqlalchemy as sa
from alembic import op

revision = 'b1e7c4a90d21'
down_revision = '9a4e6c1b2d73'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('p_return_12m', sa.Float(), nullable=True))


def downgrade():
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_column('p_return_12m')
