"""console indexes: the invocation-id prefix filter

Revision ID: 0006_console_indexes
Revises: 0005_parents_retries_tokens
Create Date: 2026-11-22 04:11:25.595393
"""
from __future__ import annotations

from alembic import op

revision = '0006_console_indexes'
down_revision = '0005_parents_retries_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.create_index('ix_invocations_invocation_id_pattern', ['invocation_id'], unique=False,
                              postgresql_ops={'invocation_id': 'varchar_pattern_ops'})


def downgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_index('ix_invocations_invocation_id_pattern',
                            postgresql_ops={'invocation_id': 'varchar_pattern_ops'})
