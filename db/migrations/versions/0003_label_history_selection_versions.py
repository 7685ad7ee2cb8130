"""Label history and selection versions: every label change is an event of an action (who, which run,
what), current verdicts and leads' adjudications are derived from it; a selection saved under a used
name becomes a new version instead of replacing the old one. Today's labels are kept: each becomes
the first event of one 'import' action per annotator.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('label_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('annotator', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=8), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('undoes', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['undoes'], ['label_actions.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_label_actions_run_annotator', 'label_actions', ['run_id', 'annotator'], unique=False)
    op.create_table('label_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=False),
    sa.Column('example_id', sa.Integer(), nullable=False),
    sa.Column('annotator', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=8), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('previous_label', sa.String(length=8), nullable=True),
    sa.Column('previous_note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['label_actions.id']),
    sa.ForeignKeyConstraint(['example_id'], ['examples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_label_events_example', 'label_events', ['example_id'], unique=False)
    op.create_index('ix_label_events_action', 'label_events', ['action_id'], unique=False)
    op.create_table('adjudications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('example_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=8), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('lead', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['label_events.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['example_id'], ['examples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('example_id')
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_labels_event_id', 'label_events', ['event_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='1'))
        batch_op.drop_constraint('uq_selections_run_name', type_='unique')
        batch_op.create_unique_constraint('uq_selections_run_name_version', ['run_id', 'name', 'version'])
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.alter_column('version', server_default=None)
    keep_todays_labels()


def keep_todays_labels() -> None:
    """Give every stored label an event, in one 'import' action per annotator."""
    labels = sa.table('labels', sa.column('id', sa.Integer), sa.column('example_id', sa.Integer),
                      sa.column('label', sa.String), sa.column('note', sa.Text), sa.column('annotator', sa.String),
                      sa.column('created_at', sa.DateTime(timezone=True)), sa.column('event_id', sa.Integer))
    actions = sa.table('label_actions', sa.column('id', sa.Integer), sa.column('annotator', sa.String),
                       sa.column('kind', sa.String), sa.column('description', sa.Text),
                       sa.column('count', sa.Integer), sa.column('created_at', sa.DateTime(timezone=True)))
    events = sa.table('label_events', sa.column('id', sa.Integer), sa.column('action_id', sa.Integer),
                      sa.column('example_id', sa.Integer), sa.column('annotator', sa.String),
                      sa.column('kind', sa.String), sa.column('label', sa.String), sa.column('note', sa.Text),
                      sa.column('created_at', sa.DateTime(timezone=True)))
    bind = op.get_bind()
    rows = bind.execute(sa.select(labels).order_by(labels.c.id)).all()
    by_annotator: dict[str, list] = {}
    for row in rows:
        by_annotator.setdefault(row.annotator, []).append(row)
    for annotator, mine in by_annotator.items():
        action_id = bind.execute(sa.insert(actions).values(
            annotator=annotator, kind='import', count=len(mine), created_at=max(r.created_at for r in mine),
            description=f'{len(mine)} labels given before the label history began').returning(actions.c.id)).scalar()
        for row in mine:
            event_id = bind.execute(sa.insert(events).values(
                action_id=action_id, example_id=row.example_id, annotator=annotator, kind='verdict',
                label=row.label, note=row.note, created_at=row.created_at).returning(events.c.id)).scalar()
            bind.execute(sa.update(labels).where(labels.c.id == row.id).values(event_id=event_id))


def downgrade() -> None:
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.drop_constraint('uq_selections_run_name_version', type_='unique')
    bind = op.get_bind()
    bind.execute(sa.text('DELETE FROM selections WHERE id NOT IN '
                         '(SELECT MAX(id) FROM selections GROUP BY run_id, name)'))
    with op.batch_alter_table('selections', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_selections_run_name', ['run_id', 'name'])
        batch_op.drop_column('version')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_constraint('fk_labels_event_id', type_='foreignkey')
        batch_op.drop_column('event_id')
    op.drop_table('adjudications')
    op.drop_index('ix_label_events_action', table_name='label_events')
    op.drop_index('ix_label_events_example', table_name='label_events')
    op.drop_table('label_events')
    op.drop_index('ix_label_actions_run_annotator', table_name='label_actions')
    op.drop_table('label_actions')
