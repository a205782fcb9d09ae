"""pending deliveries index

Revision ID: 0004_pending_deliveries_index
Revises: 0003_triggers_replays
Create Date: 2026-11-22 03:13:57.229803
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_pending_deliveries_index'
down_revision = '0003_triggers_replays'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('destination_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_destination_deliveries_pending', ['id'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))



def downgrade() -> None:
    with op.batch_alter_table('destination_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_destination_deliveries_pending', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))

