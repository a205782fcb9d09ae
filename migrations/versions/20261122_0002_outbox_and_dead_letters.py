"""outbox and dead letters

Revision ID: 0002_outbox_dead_letters
Revises: 0001_initial_ledger
Create Date: 2026-11-22 02:14:47.693162
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taskservice.ledger.models

revision = '0002_outbox_dead_letters'
down_revision = '0001_initial_ledger'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invocation_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('function', sa.String(length=64), nullable=False),
    sa.Column('invocation_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('condition', sa.String(length=32), nullable=False),
    sa.Column('error_type', sa.String(length=128), nullable=True),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letters_condition'), ['condition'], unique=False)
        batch_op.create_index('ix_dead_letters_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_dead_letters_function_id', ['function', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letters_invocation_pk'), ['invocation_pk'], unique=False)

    op.create_table('destination_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('invocation_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('function', sa.String(length=64), nullable=False),
    sa.Column('invocation_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('destination', sa.String(length=2048), nullable=False),
    sa.Column('condition', sa.String(length=32), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=256), nullable=True),
    sa.Column('claim_expires_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=1024), nullable=True),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_destination_deliveries'))
    )
    with op.batch_alter_table('destination_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_destination_deliveries_invocation_pk'), ['invocation_pk'], unique=False)
        batch_op.create_index('ix_destination_deliveries_status_next', ['status', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('destination_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_destination_deliveries_status_next')
        batch_op.drop_index(batch_op.f('ix_destination_deliveries_invocation_pk'))

    op.drop_table('destination_deliveries')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letters_invocation_pk'))
        batch_op.drop_index('ix_dead_letters_function_id')
        batch_op.drop_index('ix_dead_letters_created_at')
        batch_op.drop_index(batch_op.f('ix_dead_letters_condition'))

    op.drop_table('dead_letters')
