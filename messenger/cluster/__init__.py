"""Several nodes: `bus` (wake-ups and revocations over Redis) and `presence` (who is
online on any node)."""
