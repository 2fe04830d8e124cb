"""job names: the jobs table stores a declared job name (``import.run``), no longer a module path

Revision ID: 5c2d9e7a4f10
Revises: 3b8e61d0c5a2
Create Date: 2026-12-06 10:00:00

Queued, scheduled and finished rows are converted alike, so the pages that look jobs up by name
(the Models page, the bundles page, campaign resumes) keep finding them. RQ holds nothing to convert:
it only ever stores ``portal.jobs.run_job`` and the row's id. A row naming a path not listed here
is left as it is; if it is still waiting, it fails with "no job named …" when it runs.
"""
from alembic import op
import sqlalchemy as sa

revision = '5c2d9e7a4f10'
down_revision = '3b8e61d0c5a2'
branch_labels = None
depends_on = None

# Every dotted path that was stored for each job (the first one is what downgrade writes back).
NAMES = {
    'import.run': ('portal.services.importer.run_job', 'portal.services.importer.runs.run_job'),
    'import.rescore_after_undo': ('portal.services.importer.history.rescore_job',),
    'bundles.mine': ('portal.services.bundles.train',),
    'train.segmentation': ('portal.services.training.train_segmentation',),
    'train.churn': ('portal.services.training.train_churn',),
    'train.clv': ('portal.services.training.train_clv',),
    'train.bundles': ('portal.services.training.train_bundles',),
    'train.all': ('portal.services.training.train_all',),
    'campaign.send': ('portal.services.sending.send_campaign_job', 'portal.services.resuming.send_campaign_job'),
    'campaign.resume': ('portal.services.sending.resume_campaign_job',
                        'portal.services.resuming.resume_campaign_job'),
    'dashboard.refresh_summary': ('portal.services.dashboard_summary.refresh_job',),
}

jobs = sa.table('jobs', sa.column('func', sa.String))


def upgrade():
    for name, paths in NAMES.items():
        op.execute(jobs.update().where(jobs.c.func.in_(paths)).values(func=name))


def downgrade():
    for name, paths in NAMES.items():
        op.execute(jobs.update().where(jobs.c.func == name).values(func=paths[0]))
