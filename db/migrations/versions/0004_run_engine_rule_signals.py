"""Runs record the engine that scored them and the scoring rule's version, so cached scores are reused
only between runs that would give the same bits; signals: per-row values beside the SCAR score (response
length, kNN novelty, exemplar similarity, IFD, scores imported from other tools), each with what made it.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('engine', sa.String(length=16), nullable=False, server_default='torch'))
        # Runs stored before this revision were scored by rule 1 (batch-dependent padding).
        batch.add_column(sa.Column('rule', sa.Integer(), nullable=False, server_default='1'))
    op.create_table('signals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('made_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'name', name='uq_signals_run_name')
    )
    op.create_table('signal_values',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sa.Integer(), nullable=False),
    sa.Column('example_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['signal_id'], ['signals.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['example_id'], ['examples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('signal_id', 'example_id', name='uq_signal_values')
    )


def downgrade() -> None:
    op.drop_table('signal_values')
    op.drop_table('signals')
    # Plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy would drop and recreate `runs`, and
    # with foreign keys on that deletes every run's results and labels' actions.
    op.drop_column('runs', 'rule')
    op.drop_column('runs', 'engine')
