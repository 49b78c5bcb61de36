"""send -> commit -> push, in reading order: `service` (the commands), `writer` (the
group-commit queue), `batch` (one batch in its transaction), `notifier` (after a
commit), `live` (per-connection ordered push), `streams` (reading a stream from SQL),
`maintenance` (the periodic repair ticks)."""
