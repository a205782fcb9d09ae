"""silent doorbells: the queue of each invocation, and its waiting invocations by the time their doorbell was rung

Revision ID: 0007_silent_doorbells_index
Revises: 0006_console_indexes
Create Date: 2026-12-01 20:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_silent_doorbells_index'
down_revision = '0006_console_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_invocations_queue_status_dispatched', ['queue', 'status', 'dispatched_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_index('ix_invocations_queue_status_dispatched')
        batch_op.drop_column('queue')
