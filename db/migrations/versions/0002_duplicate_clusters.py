"""Duplicate clusters on examples: cleaning stores which cluster each copy belongs to (and its exact
group), so the member a cluster keeps is chosen after scoring, by score, in the app as in the CLI.
Flags of older cleanings ("exact"/"near" with duplicate_of) become clusters: each keeper and its copies.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_cluster', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('exact_group', sa.Integer(), nullable=True))
    examples = sa.table('examples', sa.column('id', sa.Integer), sa.column('dataset_id', sa.Integer),
                        sa.column('position', sa.Integer), sa.column('content_id', sa.String),
                        sa.column('flags', sa.JSON), sa.column('duplicate_cluster', sa.Integer),
                        sa.column('exact_group', sa.Integer))
    bind = op.get_bind()
    rows = bind.execute(sa.select(examples.c.id, examples.c.dataset_id, examples.c.position, examples.c.content_id,
                                  examples.c.flags)).all()
    flagged = [r for r in rows if r.flags and ({"exact", "near"} & set(r.flags))]
    position = {(r.dataset_id, r.content_id): r.position for r in rows}
    ids = {(r.dataset_id, r.position): r.id for r in rows}
    updates: dict[int, dict] = {}
    for r in flagged:
        kind = "exact" if "exact" in r.flags else "near"
        keeper = position.get((r.dataset_id, r.flags[kind].get("duplicate_of")))
        if keeper is None:
            continue
        group = keeper if kind == "exact" else r.position
        updates[r.id] = {"duplicate_cluster": keeper, "exact_group": group,
                         "flags": {k: v for k, v in r.flags.items() if k not in ("exact", "near")}}
        updates.setdefault(ids[(r.dataset_id, keeper)], {"duplicate_cluster": keeper, "exact_group": keeper})
    for example_id, values in updates.items():
        bind.execute(sa.update(examples).where(examples.c.id == example_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_column('exact_group')
        batch_op.drop_column('duplicate_cluster')
