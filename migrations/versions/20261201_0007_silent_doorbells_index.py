"""silent doorbells: waiting invocations by the time their doorbell was rung

Revision ID: 0007_silent_doorbells_index
Revises: 0006_console_indexes
Create Date: 2026-12-01 20:30:00
"""
from __future__ import annotations

from alembic import op

revision = '0007_silent_doorbells_index'
down_revision = '0006_console_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.create_index('ix_invocations_status_dispatched', ['status', 'dispatched_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_index('ix_invocations_status_dispatched')
