"""locator ids unique across accounts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00.000000

The streaming origin resolves `/<locator-guid>/…` before it knows the account, so a locator id
must name one locator in the whole database. Before this revision only (account, id) was unique;
a database where two accounts chose the same locator id cannot take the index, and says so.
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    dupes = bind.execute(sa.text(
        'SELECT "Id" FROM e_locators GROUP BY "Id" HAVING COUNT(*) > 1')).fetchall()
    if dupes:
        ids = ", ".join(r[0] for r in dupes[:5])
        raise RuntimeError(
            f"Locator ids used by more than one account ({ids}); delete or recreate those locators "
            "in all but one account, then start openams again.")
    with op.batch_alter_table('e_locators', schema=None) as batch_op:
        batch_op.create_index('ix_e_locators_id_global', ['Id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('e_locators', schema=None) as batch_op:
        batch_op.drop_index('ix_e_locators_id_global')
