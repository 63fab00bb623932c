"""Persistence: schema, the ledger's SQL, session factory and Alembic migrations."""
