// Messages written but not yet stored by the server. They wait in localStorage with
// their client_id (through reloads and while offline) and are sent, in order, once the
// connection is synced. The server stores a client_id once, so a resend never makes a
// second message; the stored message comes back with the same client_id and replaces
// the entry (store.js drops it).
import { RETRYABLE, RETRY_MS } from "./connection.js";
import { quoteOf } from "./lifecycle.js";
import { storage } from "./storage.js";

export function newClientId() {
  // The time first (ms, 12 hex digits), then 64 random bits: a sender's ids sort by
  // time, which the server's (sender, client_id) index stores cheaper than random ids
  // (messenger/client/ids.py has the numbers). crypto.getRandomValues works on plain
  // http too (randomUUID needs a secure context).
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const time = Date.now().toString(16).padStart(12, "0");
  return "web-" + time + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  constructor(messenger) {
    this.messenger = messenger;
    this.items = storage.outbox(messenger.me); // [{client_id, to, body, reply_to, queued_at, state, error}]
    this.flushing = false;
  }

  /** Queues a message; `replyTo`, a message we hold, makes it a reply (3.2 `send`). */
  send(to, body, replyTo) {
    this.items.push({
      client_id: newClientId(),
      to,
      body,
      // The quote as it was when written, shown until the server's answer replaces it.
      reply_to: replyTo ? quoteOf(replyTo) : null,
      queued_at: new Date().toISOString(),
      state: "pending",
      error: null,
    });
    this.save();
    this.messenger.changed();
    this.flush();
  }

  retry(clientId) {
    const item = this.items.find((i) => i.client_id === clientId);
    if (!item) return;
    item.state = "pending";
    item.error = null;
    this.save();
    this.messenger.changed();
    this.flush();
  }

  discard(clientId) {
    this.drop(clientId);
    this.messenger.changed();
  }

  drop(clientId) {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.client_id !== clientId);
    if (this.items.length !== before) this.save();
  }

  save() {
    storage.setOutbox(this.messenger.me, this.items);
  }

  pendingCount() {
    return this.items.filter((i) => i.state === "pending").length;
  }

  /** Sends the outbox in order, one at a time, while connected and synced. */
  async flush() {
    const messenger = this.messenger;
    const { stream } = messenger;
    if (this.flushing || !stream.synced) return;
    this.flushing = true;
    try {
      for (;;) {
        const item = this.items.find((i) => i.state === "pending");
        if (!item || !stream.synced) return;
        const payload = { to: item.to, body: item.body, client_id: item.client_id };
        if (item.reply_to && Number.isSafeInteger(item.reply_to.id)) payload.reply_to = item.reply_to.id;
        const answer = await messenger.connection.call("send", payload);
        if (answer.ok) {
          messenger.store.addMessage(answer.message, false);
          messenger.afterApply();
          continue;
        }
        const code = answer.error && answer.error.code;
        if (RETRYABLE.has(code)) {
          // Kept with its client_id: a resend cannot store it twice.
          if (messenger.connection.connected) messenger.later(() => this.flush(), RETRY_MS);
          return;
        }
        item.state = "failed";
        item.error = (answer.error && answer.error.message) || "Not sent.";
        this.save();
        messenger.changed();
      }
    } finally {
      this.flushing = false;
    }
  }
}
