"""kafka triggers and replays

Revision ID: 0003_triggers_replays
Revises: 0002_outbox_dead_letters
Create Date: 2026-11-22 02:46:41.511290
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taskservice.ledger.models

revision = '0003_triggers_replays'
down_revision = '0002_outbox_dead_letters'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('triggers',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('function', sa.String(length=64), nullable=False),
    sa.Column('topics', sa.Text(), nullable=False),
    sa.Column('consumer_group', sa.String(length=255), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('batching_window_s', sa.Float(), nullable=False),
    sa.Column('starting_position', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('description', sa.String(length=1024), nullable=False),
    sa.Column('lag', sa.Text(), nullable=True),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_triggers'))
    )
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay_of', sa.String(length=64), nullable=True))
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_function_invocation_id', ['function', 'invocation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_function_invocation_id')
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_column('replay_of')

    op.drop_table('triggers')
