"""Prometheus metrics, on a registry of the application's own (no process globals, so
several servers can run in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "messenger_connections", "Socket.IO connections open on this node", registry=r
        )
        self.messages_stored = Counter(
            "messenger_messages_stored_total", "Messages committed", registry=r
        )
        self.messages_delivered = Counter(
            "messenger_messages_delivered_total", "Messages marked delivered", registry=r
        )
        self.messages_read = Counter(
            "messenger_messages_read_total", "Messages marked read", registry=r
        )
        self.message_changes = Counter(
            "messenger_message_changes_total",
            "Changes to messages committed (edited, deleted, reacted, hidden), by change",
            ["change"],
            registry=r,
        )
        self.pushes_sent = Counter(
            "messenger_pushes_sent_total",
            "Pushes accepted by their receiver, by kind",
            ["kind"],
            registry=r,
        )
        self.pushes_failed = Counter(
            "messenger_pushes_failed_total",
            "Pushes that failed, by kind and reason (gone, rate_limited, server_error,"
            " refused_by_receiver, timeout, connection, refused)",
            ["kind", "reason"],
            registry=r,
        )
        self.pushes_pending = Gauge(
            "messenger_pushes_pending",
            "Subscriptions with a push due or being sent",
            registry=r,
        )
        self.push_oldest_pending_seconds = Gauge(
            "messenger_push_oldest_pending_seconds",
            "How long the longest-waiting push has been due",
            registry=r,
        )
        self.attachments_expired = Counter(
            "messenger_attachments_expired_total",
            "Uploads removed because no send took them within MESSENGER_UPLOAD_TTL",
            registry=r,
        )
        self.blobs_collected = Counter(
            "messenger_blobs_collected_total",
            "Blobs removed because no attachment named them any more",
            registry=r,
        )
        self.duplicate_sends = Counter(
            "messenger_duplicate_sends_total",
            "Sends answered with an already stored message (same client_id)",
            registry=r,
        )
        self.rate_limited = Counter(
            "messenger_rate_limited_total", "Events refused by the rate limit", registry=r
        )
        self.backlog_events = Counter(
            "messenger_backlog_events_total",
            "Events pushed from SQL on connect or catch-up (not live)",
            registry=r,
        )
        self.redeliveries = Counter(
            "messenger_redeliveries_total",
            "Undelivered messages pushed again to a new connection",
            registry=r,
        )
        self.resyncs = Counter(
            "messenger_resyncs_total",
            "Connections found behind their stream head and caught up from SQL",
            registry=r,
        )
        self.gap_repairs = Counter(
            "messenger_gap_repairs_total",
            "Gaps in a connection's stream that no wake-up closed in time, read from SQL",
            registry=r,
        )
        self.write_batch_size = Histogram(
            "messenger_write_batch_size",
            "Items (sends, marks) per write transaction",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "messenger_commit_seconds",
            "Time to run and commit one write batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # The writer's saturation signal: a batch waits while the one before it runs,
        # so this grows with the commit time long before anything fails.
        self.write_wait_seconds = Histogram(
            "messenger_write_wait_seconds",
            "How long the oldest item of each write batch waited in the writer's queue",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_seconds = Histogram(
            "messenger_search_seconds",
            "Time to find a page of search results in the database",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # SQLite's search index (delivery/search_index.py).
        self.search_unindexed = Gauge(
            "messenger_search_unindexed_documents",
            "Messages not yet in the full-text index (searched by a scan meanwhile)",
            registry=r,
        )
        self.search_removed = Counter(
            "messenger_search_removed_texts_total",
            "Edited or deleted texts taken out of the full-text index",
            registry=r,
        )
        self.search_merge_steps = Counter(
            "messenger_search_merge_steps_total",
            "Merge steps that rewrote full-text segments after a removal",
            registry=r,
        )
        self.write_failures = Counter(
            "messenger_write_failures_total", "Write batches that failed", ["code"], registry=r
        )
        self.backlog_messages = Gauge(
            "messenger_backlog_messages",
            "Messages stored and not yet delivered to any device (whole database)",
            registry=r,
        )
        self.backlog_oldest_seconds = Gauge(
            "messenger_backlog_oldest_age_seconds",
            "Age of the oldest undelivered message (0 when none waits)",
            registry=r,
        )
        self.auth_failures = Counter(
            "messenger_auth_failures_total", "Refused logins and socket handshakes", registry=r
        )
        self.tcp_connections = Gauge(
            "messenger_tcp_connections", "TCP connections open on this node", registry=r
        )
        self.tcp_refused = Counter(
            "messenger_tcp_connections_refused_total",
            "TCP connections closed on accept, over a connection cap (per_address or node)",
            ["cap"],
            registry=r,
        )
        self.header_timeouts = Counter(
            "messenger_header_timeouts_total",
            "Connections closed because a request's line and headers came too late",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
