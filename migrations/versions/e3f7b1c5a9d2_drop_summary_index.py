"""Drop ix_customers_summary: the stored summaries replaced the per-request GROUP BY it covered

Every score write (full and incremental rescores) updated this ten-column index. The pages read the stored
customer summaries now, and the summary refresh groups by lifecycle and consent too, which the index does
not hold: on SQLite at 100k customers a store's refresh takes 104 ms without it, 163 ms with it, and a
5,000-customer incremental rescore 0.49 s instead of 0.56 s.

Revision ID: e3f7b1c5a9d2
Revises: d2e6a0b4f8c7
Create Date: 2026-12-05 10:05:00

"""

from alembic import op

revision = 'e3f7b1c5a9d2'
down_revision = 'd2e6a0b4f8c7'
branch_labels = None
depends_on = None

COLUMNS = [
    'store_id',
    'tier',
    'churn_band',
    'erased_at',
    'recency',
    'scored_at',
    'monetary',
    'spend_12m',
    'clv_12m',
    'churn_probability',
]


def upgrade():
    op.drop_index('ix_customers_summary', table_name='customers')


def downgrade():
    op.create_index('ix_customers_summary', 'customers', COLUMNS)
