"""Reaching offline devices: Web Push (RFC 8291 encryption, RFC 8292 VAPID) and signed
webhooks, sent by a worker that claims its work from SQL (docs/protocol.md 3.9)."""
