"""ledger: functions, invocations, transitions, logs

Revision ID: 0001_initial_ledger
Revises: 
Create Date: 2026-11-22 01:55:02.865175
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taskservice.ledger.models

revision = '0001_initial_ledger'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('functions',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('handler', sa.String(length=256), nullable=False),
    sa.Column('timeout_s', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('max_event_age_s', sa.Integer(), nullable=False),
    sa.Column('on_success', sa.String(length=2048), nullable=True),
    sa.Column('on_failure', sa.String(length=2048), nullable=True),
    sa.Column('concurrency', sa.Integer(), nullable=True),
    sa.Column('description', sa.String(length=1024), nullable=False),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_functions'))
    )
    op.create_table('invocations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('function', sa.String(length=64), nullable=False),
    sa.Column('invocation_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.Enum('Enqueued', 'Running', 'Retrying', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Expired', 'Invalid', name='invocation_status', length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_type', sa.String(length=128), nullable=True),
    sa.Column('condition', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('not_before', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=256), nullable=True),
    sa.Column('progress_percent', sa.Float(), nullable=True),
    sa.Column('progress_message', sa.String(length=1024), nullable=True),
    sa.Column('log_lines', sa.Integer(), nullable=False),
    sa.Column('updated_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invocations')),
    sa.UniqueConstraint('function', 'invocation_id', name='uq_invocations_function_invocation_id'),
    sa.UniqueConstraint('request_id', name=op.f('uq_invocations_request_id'))
    )
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.create_index('ix_invocations_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_invocations_function_id', ['function', 'id'], unique=False)
        batch_op.create_index('ix_invocations_status_lease', ['status', 'lease_expires_at'], unique=False)

    op.create_table('invocation_logs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invocation_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['invocation_pk'], ['invocations.id'], name=op.f('fk_invocation_logs_invocation_pk_invocations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invocation_logs'))
    )
    with op.batch_alter_table('invocation_logs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invocation_logs_invocation_pk'), ['invocation_pk'], unique=False)

    op.create_table('invocation_transitions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invocation_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_status', sa.Enum('Enqueued', 'Running', 'Retrying', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Expired', 'Invalid', name='invocation_status', length=16), nullable=True),
    sa.Column('to_status', sa.Enum('Enqueued', 'Running', 'Retrying', 'Succeeded', 'Failed', 'Stopping', 'Stopped', 'Expired', 'Invalid', name='invocation_status', length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=1024), nullable=False),
    sa.Column('at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invocation_pk'], ['invocations.id'], name=op.f('fk_invocation_transitions_invocation_pk_invocations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invocation_transitions'))
    )
    with op.batch_alter_table('invocation_transitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invocation_transitions_invocation_pk'), ['invocation_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('invocation_transitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invocation_transitions_invocation_pk'))

    op.drop_table('invocation_transitions')
    with op.batch_alter_table('invocation_logs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invocation_logs_invocation_pk'))

    op.drop_table('invocation_logs')
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_index('ix_invocations_status_lease')
        batch_op.drop_index('ix_invocations_function_id')
        batch_op.drop_index('ix_invocations_created_at')

    op.drop_table('invocations')
    op.drop_table('functions')
    sa.Enum(name='invocation_status').drop(op.get_bind(), checkfirst=True)
