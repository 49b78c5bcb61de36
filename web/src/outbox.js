// Messages written but not yet stored by the server. They wait in localStorage with
// their client_id (through reloads and while offline) and are sent, in order, once the
// connection is synced. The server stores a client_id once, so a resend never makes a
// second message; the stored message comes back with the same client_id and replaces
// the entry (store.js drops it).
//
// A message with files uploads them first, one by one, each id kept in the entry as soon
// as the server answers; the files themselves wait in IndexedDB (files.js), so a file
// chosen offline, or a reload in the middle, loses nothing. An upload cut off before
// its answer is simply made again after the reload: the server stores the bytes once
// (content-addressed) and collects the upload no message took, and the send's client_id
// still makes one message.
import { ApiError } from "./api.js";
import { RETRYABLE, RETRY_MS } from "./connection.js";
import { files } from "./files.js";
import { quoteOf } from "./lifecycle.js";
import { storage } from "./storage.js";
import { retryableUpload, safeName, upload, uploadType } from "./uploads.js";

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
    // [{client_id, to, body, reply_to, queued_at, state, error, attachments}]; each
    // attachment {key, name, size, type, id}: `key` in files.js, `id` once uploaded.
    this.items = storage.outbox(messenger.me);
    this.flushing = false;
    this.blobs = new Map(); // key -> the Blob, for this page (IndexedDB for the next)
    this.progress = new Map(); // key -> the share of it uploaded, 0..1, while it goes
    this.aborter = new AbortController();
    files.keepOnly(messenger.me, (key) => this.items.some((i) => keysOf(i).includes(key)));
  }

  stop() {
    this.aborter.abort();
  }

  /**
   * Queues a message; `replyTo`, a message we hold, makes it a reply (3.2 `send`);
   * `chosen` (Files) are uploaded before it is sent.
   */
  send(to, body, replyTo, chosen = []) {
    const clientId = newClientId();
    const attachments = chosen.map((file, n) => {
      const key = files.key(this.messenger.me, clientId, n);
      this.blobs.set(key, file);
      files.put(key, file);
      return { key, name: safeName(file.name), size: file.size, type: uploadType(file), id: null };
    });
    this.items.push({
      client_id: clientId,
      to,
      body,
      // The quote as it was when written, shown until the server's answer replaces it.
      reply_to: replyTo ? quoteOf(replyTo) : null,
      attachments,
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
    const item = this.items.find((i) => i.client_id === clientId);
    if (!item) return;
    this.items = this.items.filter((i) => i !== item);
    this.save();
    const keys = keysOf(item);
    for (const key of keys) {
      this.blobs.delete(key);
      this.progress.delete(key);
    }
    files.remove(keys);
  }

  /** How much of an attachment went out (0..1), or null when it is not going now. */
  progressOf(key) {
    const share = this.progress.get(key);
    return share === undefined ? null : share;
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
        const attachments = item.attachments || [];
        if (attachments.length) {
          const uploaded = await this.uploadAll(item);
          if (uploaded === "retry") {
            if (messenger.connection.connected) messenger.later(() => this.flush(), RETRY_MS);
            return;
          }
          if (uploaded !== "done") return;
          if (!stream.synced) return;
          payload.attachments = attachments.map((a) => a.id);
        }
        const answer = await messenger.connection.call("send", payload);
        if (answer.ok) {
          messenger.store.addMessage(answer.message, false);
          messenger.afterApply();
          continue;
        }
        const code = answer.error && answer.error.code;
        if (code === "not_found" && attachments.length && !item.uploadedAgain) {
          // Our uploads waited past the server's limit and were collected: once more.
          item.uploadedAgain = true;
          attachments.forEach((a) => (a.id = null));
          this.save();
          continue;
        }
        if (RETRYABLE.has(code)) {
          // Kept with its client_id: a resend cannot store it twice.
          if (messenger.connection.connected) messenger.later(() => this.flush(), RETRY_MS);
          return;
        }
        this.fail(item, (answer.error && answer.error.message) || "Not sent.");
      }
    } finally {
      this.flushing = false;
    }
  }

  fail(item, error) {
    item.state = "failed";
    item.error = error;
    this.save();
    this.messenger.changed();
  }

  /**
   * Uploads the entry's files that have no id yet, in order. "done" when all have
   * one; "retry" when the network or the server may do better later; "stop" when
   * the entry failed (said in it) or the page is leaving.
   */
  async uploadAll(item) {
    const messenger = this.messenger;
    for (const attachment of item.attachments) {
      if (attachment.id !== null) continue;
      const blob = this.blobs.get(attachment.key) || (await files.get(attachment.key));
      if (!blob) {
        this.fail(item, `“${attachment.name}” is no longer on this device.`);
        return "stop";
      }
      this.blobs.set(attachment.key, blob);
      this.progress.set(attachment.key, 0);
      messenger.changed();
      try {
        const onProgress = (sent, total) => {
          this.progress.set(attachment.key, total > 0 ? Math.min(1, sent / total) : 1);
          messenger.changed();
        };
        const made = await upload(messenger.token, blob, attachment.name, onProgress, this.aborter.signal);
        attachment.id = made.id;
        this.save();
      } catch (err) {
        if (err instanceof ApiError && err.code === "unauthorized") messenger.sessionEnded();
        if (retryableUpload(err) && err.code !== "aborted") return "retry";
        if (err instanceof ApiError && err.code !== "unauthorized" && err.code !== "aborted") {
          this.fail(item, `“${attachment.name}” could not be uploaded: ${err.message}`);
        }
        return "stop";
      } finally {
        this.progress.delete(attachment.key);
        messenger.changed();
      }
    }
    return "done";
  }
}

function keysOf(item) {
  return Array.isArray(item.attachments) ? item.attachments.map((a) => a.key) : [];
}
