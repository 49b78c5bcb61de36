"""Persistence: the engine (`db`), the tables (`models`), and the queries by table
(`users`, `tokens`, `blocks`, `streams`, `messages`, `message_reads`).

Queries are plain functions of a connection that never commit (the caller owns the
transaction: `Database.read` and `Database.write` run them). Core statements over the
tables of `models`; rows come back as mappings.

The statements of the hot paths (every send, mark, connect and page) are built once,
with bound parameters: building a Core statement and its cache key on each call cost
more than running it did. Lists go in as expanding parameters, so the statement stays
the same; the writer's per-batch statements skip even that (`DriverStatement`,
compiled once, with lists padded to a few sizes: `sized_statements`, compiled up
front by `writer_statements`).
"""
