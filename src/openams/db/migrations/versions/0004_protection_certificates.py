"""protection certificates; content key ids unique across accounts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:00:00.000000

`protection_certificates` holds the per-account, per-ContentKeyType certificates that clients wrap
content keys to (the private key sealed with the server key). The key delivery service finds a
content key by the KID in its URL before it knows the account, so a content key id must name one
key in the whole database; a database where two accounts chose the same key id cannot take the
index, and says so.
"""
import sqlalchemy as sa
from alembic import op

import openams.db.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    dupes = bind.execute(sa.text(
        'SELECT "Id" FROM e_contentkeys GROUP BY "Id" HAVING COUNT(*) > 1')).fetchall()
    if dupes:
        ids = ", ".join(r[0] for r in dupes[:5])
        raise RuntimeError(
            f"Content key ids used by more than one account ({ids}); delete those keys in all but one "
            "account (and recreate them there with new ids), then start openams again.")
    op.create_table(
        'protection_certificates',
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('content_key_type', sa.Integer(), nullable=False),
        sa.Column('thumbprint', sa.String(length=40), nullable=False),
        sa.Column('certificate', sa.Text(), nullable=False),
        sa.Column('private_key', sa.Text(), nullable=False),
        sa.Column('created', openams.db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'content_key_type', name=op.f('pk_protection_certificates')),
    )
    with op.batch_alter_table('protection_certificates', schema=None) as batch_op:
        batch_op.create_index('ix_protection_certificates_thumbprint', ['account_id', 'thumbprint'],
                              unique=True)
    with op.batch_alter_table('e_contentkeys', schema=None) as batch_op:
        batch_op.create_index('ix_e_contentkeys_id_global', ['Id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('e_contentkeys', schema=None) as batch_op:
        batch_op.drop_index('ix_e_contentkeys_id_global')
    with op.batch_alter_table('protection_certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_protection_certificates_thumbprint')
    op.drop_table('protection_certificates')
