"""flows: definitions, executions, their frames, step runs, history and engine wake-ups; invocations name their
execution

Revision ID: 0009_flows
Revises: 0008_event_sources
Create Date: 2026-12-02 01:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskservice.ledger.models import UTCDateTime

revision = '0009_flows'
down_revision = '0008_event_sources'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _execution_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['execution_pk'], ['flow_executions.id'],
                                   name=op.f(f'fk_{table}_execution_pk_flow_executions'), ondelete='CASCADE')


def upgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('execution_pk', BigId, nullable=True))
    op.create_table(
        'flows',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('description', sa.String(length=1024), nullable=False),
        sa.Column('on_success', sa.String(length=2048), nullable=True),
        sa.Column('on_failure', sa.String(length=2048), nullable=True),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_flows')),
    )
    op.create_table(
        'flow_executions',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('flow', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('request_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('on_success', sa.String(length=2048), nullable=True),
        sa.Column('on_failure', sa.String(length=2048), nullable=True),
        sa.Column('input', sa.Text(), nullable=False),
        sa.Column('output', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_type', sa.String(length=128), nullable=True),
        sa.Column('started_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('timeout_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('updated_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('redrives', sa.Integer(), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_executions')),
        sa.UniqueConstraint('flow', 'name', name='uq_flow_executions_flow_name'),
        sa.UniqueConstraint('request_id', name=op.f('uq_flow_executions_request_id')),
    )
    with op.batch_alter_table('flow_executions', schema=None) as batch_op:
        batch_op.create_index('ix_flow_executions_flow_id', ['flow', 'id'], unique=False)
        batch_op.create_index('ix_flow_executions_status_id', ['status', 'id'], unique=False)
        batch_op.create_index('ix_flow_executions_started_at', ['started_at'], unique=False)
    op.create_table(
        'flow_frames',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('execution_pk', BigId, nullable=False),
        sa.Column('scope', sa.String(length=512), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('step', sa.String(length=64), nullable=True),
        sa.Column('entered', sa.Boolean(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('output', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_type', sa.String(length=128), nullable=True),
        _execution_fk('flow_frames'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_frames')),
        sa.UniqueConstraint('execution_pk', 'scope', name='uq_flow_frames_execution_pk_scope'),
    )
    op.create_table(
        'flow_steps',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('execution_pk', BigId, nullable=False),
        sa.Column('path', sa.String(length=512), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('visit', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('items', sa.Integer(), nullable=True),
        sa.Column('invocation_pk', BigId, nullable=True),
        sa.Column('function', sa.String(length=64), nullable=True),
        sa.Column('invocation_id', sa.String(length=128), nullable=True),
        sa.Column('input', sa.Text(), nullable=True),
        sa.Column('output', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_type', sa.String(length=128), nullable=True),
        sa.Column('due_at', UTCDateTime(timezone=True), nullable=True),
        sa.Column('entered_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', UTCDateTime(timezone=True), nullable=True),
        _execution_fk('flow_steps'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_steps')),
        sa.UniqueConstraint('execution_pk', 'path', name='uq_flow_steps_execution_pk_path'),
    )
    with op.batch_alter_table('flow_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flow_steps_invocation_pk'), ['invocation_pk'], unique=False)
    op.create_table(
        'flow_events',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('execution_pk', BigId, nullable=False),
        sa.Column('at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('path', sa.String(length=512), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        _execution_fk('flow_events'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_events')),
    )
    with op.batch_alter_table('flow_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flow_events_execution_pk'), ['execution_pk'], unique=False)
    op.create_table(
        'flow_wakeups',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('execution_pk', BigId, nullable=False),
        sa.Column('due_at', UTCDateTime(timezone=True), nullable=False),
        _execution_fk('flow_wakeups'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_flow_wakeups')),
    )
    with op.batch_alter_table('flow_wakeups', schema=None) as batch_op:
        batch_op.create_index('ix_flow_wakeups_due_at', ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_flow_wakeups_execution_pk'), ['execution_pk'], unique=False)


def downgrade() -> None:
    for table in ('flow_wakeups', 'flow_events', 'flow_steps', 'flow_frames', 'flow_executions', 'flows'):
        op.drop_table(table)
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_column('execution_pk')
