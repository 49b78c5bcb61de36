"""Persistence: the engine, the tables, and queries that never commit."""
