"""event sources: trigger kinds (timer, storage, queue) with their config and state; queue trigger message ids

Revision ID: 0008_event_sources
Revises: 0007_silent_doorbells_index
Create Date: 2026-12-01 21:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_event_sources'
down_revision = '0007_silent_doorbells_index'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='kafka', nullable=False))
        batch_op.add_column(sa.Column('config', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('state', sa.Text(), nullable=True))
    op.create_table(
        'queue_messages',
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('message_id', sa.String(length=255), nullable=False),
        sa.Column('invocation_pk', BigId, nullable=False),
        sa.ForeignKeyConstraint(['invocation_pk'], ['invocations.id'],
                                name=op.f('fk_queue_messages_invocation_pk_invocations'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('trigger', 'message_id', name=op.f('pk_queue_messages')),
    )
    with op.batch_alter_table('queue_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queue_messages_invocation_pk'), ['invocation_pk'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('queue_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queue_messages_invocation_pk'))
    op.drop_table('queue_messages')
    with op.batch_alter_table('triggers', schema=None) as batch_op:
        batch_op.drop_column('state')
        batch_op.drop_column('config')
        batch_op.drop_column('kind')
