"""Alembic environment: runs on the connection db.store.migrate hands over, in one transaction."""
from alembic import context
from sqlalchemy import text

from db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two processes opening a fresh database at once: the second waits for the first.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x5CA257D10})
    context.run_migrations()
