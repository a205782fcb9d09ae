"""fan-out parents, manual retries, api tokens, console indexes

Revision ID: 0005_parents_retries_tokens
Revises: 0004_pending_deliveries_index
Create Date: 2026-11-22 03:55:45.476032
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import taskservice.ledger.models

revision = '0005_parents_retries_tokens'
down_revision = '0004_pending_deliveries_index'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('name', name=op.f('uq_api_tokens_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('retry_base', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('resubmitted_at', taskservice.ledger.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_invocations_function_status_id', ['function', 'status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invocations_parent_pk'), ['parent_pk'], unique=False)
        batch_op.create_index('ix_invocations_status_id', ['status', 'id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_invocations_parent_pk_invocations'), 'invocations', ['parent_pk'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('invocations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invocations_parent_pk_invocations'), type_='foreignkey')
        batch_op.drop_index('ix_invocations_status_id')
        batch_op.drop_index(batch_op.f('ix_invocations_parent_pk'))
        batch_op.drop_index('ix_invocations_function_status_id')
        batch_op.drop_column('resubmitted_at')
        batch_op.drop_column('retry_base')
        batch_op.drop_column('parent_pk')

    op.drop_table('api_tokens')
