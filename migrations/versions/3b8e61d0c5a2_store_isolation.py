"""store isolation: the stores an import wrote to, job and segment scope, session versions

Revision ID: 3b8e61d0c5a2
Revises: 7f3c2a9d1e44
Create Date: 2026-12-04 23:50:00

"""
from alembic import op
import sqlalchemy as sa

revision = '3b8e61d0c5a2'
down_revision = '7f3c2a9d1e44'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('import_stores',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['imports.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], ),
    sa.PrimaryKeyConstraint('import_id', 'store_id')
    )
    with op.batch_alter_table('import_stores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_stores_store_id'), ['store_id'], unique=False)
    # Imports already recorded wrote to the stores their lines and stock levels name; a run that left
    # neither (a customers file, a refused run) keeps the store it was recorded against.
    op.execute("""
        INSERT INTO import_stores (import_id, store_id)
        SELECT DISTINCT import_id, store_id FROM purchase_lines WHERE import_id IS NOT NULL
        UNION
        SELECT DISTINCT import_id, store_id FROM stock_levels WHERE import_id IS NOT NULL
        UNION
        SELECT id, store_id FROM imports i WHERE store_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM purchase_lines l WHERE l.import_id = i.id)
          AND NOT EXISTS (SELECT 1 FROM stock_levels s WHERE s.import_id = i.id)""")

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('store_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_jobs_store_id', 'stores', ['store_id'], ['id'])
    with op.batch_alter_table('saved_segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('store_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_saved_segments_store_id'), ['store_id'], unique=False)
        batch_op.create_foreign_key('fk_saved_segments_store_id', 'stores', ['store_id'], ['id'])
    # Segments saved before: the owner's store (none for admins and chain-wide users).
    op.execute("""
        UPDATE saved_segments SET store_id = (
            SELECT u.store_id FROM users u WHERE u.email = saved_segments.owner_email AND u.role <> 'admin')""")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
    with op.batch_alter_table('saved_segments', schema=None) as batch_op:
        batch_op.drop_constraint('fk_saved_segments_store_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_saved_segments_store_id'))
        batch_op.drop_column('store_id')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_store_id', type_='foreignkey')
        batch_op.drop_column('store_id')
    with op.batch_alter_table('import_stores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_stores_store_id'))
    op.drop_table('import_stores')
