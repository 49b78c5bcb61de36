// The messenger's state and its Socket.IO connection, without any DOM.
//
// The server's stream is the truth: every `new_message` / `receipt` carries the
// user's stream cursor. We keep the last processed cursor in localStorage and pass it
// in `auth.cursor` when we (re)connect, so the server replays exactly what we missed;
// duplicates are dropped by message id. Messages typed while offline wait in an outbox
// in localStorage with their client_id, and are sent again after reconnecting: the
// server stores a client_id once, so a resend never makes a second message.
import { io } from "socket.io-client";
import { ApiError, api } from "./api.js";
import { storage } from "./storage.js";

export const RANK = { sent: 1, delivered: 2, read: 3 };
const ACK_TIMEOUT_MS = 10000;
const RETRY_MS = 3000;
const PAGE = 50;
const MARK_BATCH = 500;
// Errors after which the same send may succeed later; others fail the message.
const RETRYABLE = new Set(["unavailable", "rate_limited", "internal", "timeout", "offline"]);

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

function isMessage(m) {
  return (
    m &&
    Number.isSafeInteger(m.id) &&
    typeof m.from === "string" &&
    typeof m.to === "string" &&
    typeof m.body === "string" &&
    m.status in RANK
  );
}

export class Messenger {
  /**
   * @param {{token: string, username: string}} session
   * @param {() => void} onChange called after any state change (the UI re-renders)
   * @param {(reason: string) => void} onSessionEnded the token no longer works
   */
  constructor(session, onChange, onSessionEnded) {
    this.me = session.username;
    this.token = session.token;
    this.onChange = onChange;
    this.onSessionEnded = onSessionEnded;
    this.messages = new Map(); // id -> Message (one object per id, updated in place)
    this.threads = new Map(); // peer -> {ids, hasOlder, loaded, loading, error}
    this.conversations = new Map(); // peer -> {with, last_message, unread}
    this.outbox = storage.outbox(this.me); // [{client_id, to, body, queued_at, state, error}]
    this.cursor = storage.cursor(this.me);
    this.connected = false;
    this.synced = false;
    this.online = navigator.onLine;
    this.openPeer = null;
    this.generation = 0; // bumped per connection; stale async work checks it
    this.queue = Promise.resolve(); // stream events are processed one at a time, in order
    this.toDeliver = new Set();
    this.asked = { delivered: new Set(), read: new Set() };
    this.flushing = false;
    this.stopped = false;
    this.timers = new Set();
    this.refreshing = false;
    this.refreshAgain = false;

    this.socket = io({
      path: "/socket.io",
      // Websocket first; polling when websockets are blocked on the way.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      autoConnect: false,
      reconnectionDelayMax: 5000,
      // A function, so every reconnect sends the cursor as it is then.
      auth: (cb) => cb(this.cursor === null ? { token: this.token } : { token: this.token, cursor: this.cursor }),
    });
    this.listen();
  }

  // ---- connection -------------------------------------------------------------

  listen() {
    const s = this.socket;
    s.on("connect", () => {
      this.generation += 1;
      this.connected = true;
      this.synced = false;
      this.changed();
    });
    s.on("disconnect", (reason) => {
      this.connected = false;
      this.synced = false;
      this.asked.delivered.clear();
      this.asked.read.clear();
      this.changed();
      // The server closed us (token revoked, node stopping): the client library does
      // not retry that by itself. A dead token is then refused at connect.
      if (reason === "io server disconnect") this.later(() => this.connect(), RETRY_MS);
    });
    s.on("connect_error", (err) => {
      const code = err && err.data && err.data.code;
      if (code === "unauthorized") {
        this.onSessionEnded("Your session has ended. Please log in again.");
        return;
      }
      // A refusal with data (e.g. `unavailable`) is not retried by the library.
      if (err && err.data) this.later(() => this.connect(), RETRY_MS);
      this.changed();
    });
    s.on("new_message", (data) => this.enqueue(() => this.onStream("new_message", data)));
    s.on("receipt", (data) => this.enqueue(() => this.onStream("receipt", data)));
    s.on("synced", (data) => this.enqueue(() => this.onSynced(data)));

    this.onOffline = () => {
      // Browsers keep an open websocket through a network change and notice only at
      // the next ping timeout; say goodbye now and reconnect when the network is back.
      this.online = false;
      this.socket.disconnect();
      this.changed();
    };
    this.onOnline = () => {
      this.online = true;
      this.connect();
      this.changed();
    };
    this.onVisibility = () => this.markRead();
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("focus", this.onVisibility);
  }

  start() {
    this.changed();
    this.connect();
    this.refreshConversations();
  }

  connect() {
    if (this.stopped || this.socket.connected || !navigator.onLine) return;
    this.socket.connect();
  }

  stop() {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("focus", this.onVisibility);
    this.socket.off();
    this.socket.disconnect();
  }

  async logout() {
    this.stop();
    try {
      await api.logout(this.token);
    } catch {
      // Offline or already revoked: forgetting it here is what matters.
    }
    storage.forget(this.me);
  }

  later(fn, ms) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
  }

  changed() {
    if (!this.stopped) this.onChange();
  }

  /** One acknowledged event; a timeout or a missing connection is an error answer. */
  async call(event, payload) {
    if (!this.socket.connected) {
      return { ok: false, error: { code: "offline", message: "Not connected." } };
    }
    try {
      const answer = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
      return answer && typeof answer === "object"
        ? answer
        : { ok: false, error: { code: "internal", message: "A malformed answer." } };
    } catch {
      return { ok: false, error: { code: "timeout", message: "The server did not answer." } };
    }
  }

  enqueue(task) {
    this.queue = this.queue.then(task).catch((err) => console.error("messenger:", err));
  }

  // ---- the stream ---------------------------------------------------------------

  async onStream(name, data) {
    if (!data || !Number.isSafeInteger(data.cursor)) return;
    // Before `synced` the backlog's cursors may skip (undelivered messages only); after
    // it every event is the previous cursor + 1, and a jump means we missed some.
    if (this.synced && this.cursor !== null && data.cursor > this.cursor + 1) {
      if (!(await this.catchUp())) {
        this.apply(name, data); // shown, but the cursor stays, so the gap is retried
        this.afterApply();
        return;
      }
    }
    this.apply(name, data);
    if (this.synced && (this.cursor === null || data.cursor > this.cursor)) {
      this.setCursor(data.cursor);
    }
    this.afterApply();
  }

  /** Fills a gap with `sync` from our cursor to the stream's head. */
  async catchUp() {
    const generation = this.generation;
    for (;;) {
      const answer = await this.call("sync", { after: this.cursor, limit: 500 });
      if (!answer.ok || generation !== this.generation) return false;
      for (const event of answer.events) {
        this.apply(event.event, event.data);
        if (event.data.cursor > this.cursor) this.setCursor(event.data.cursor);
      }
      if (!answer.has_more) return true;
    }
  }

  onSynced(data) {
    if (!data || !Number.isSafeInteger(data.cursor)) return;
    this.setCursor(data.cursor);
    this.synced = true;
    this.refreshConversations();
    if (this.openPeer) this.loadNewest(this.openPeer);
    this.afterApply();
    this.flushOutbox();
  }

  setCursor(cursor) {
    this.cursor = cursor;
    storage.setCursor(this.me, cursor);
  }

  apply(name, data) {
    if (name === "new_message") this.addMessage(data.message, this.synced);
    else if (name === "receipt") this.applyReceipt(data);
  }

  afterApply() {
    this.flushDelivered();
    this.markRead();
    this.changed();
  }

  peerOf(m) {
    return m.from === this.me ? m.to : m.from;
  }

  thread(peer) {
    let thread = this.threads.get(peer);
    if (!thread) {
      // `oldest`: where scroll-back continues, the oldest id of the history pages we
      // loaded; older ids may be held already (an undelivered backlog), not the gap.
      thread = { ids: [], oldest: null, hasOlder: false, loaded: false, loading: false, error: null };
      this.threads.set(peer, thread);
    }
    return thread;
  }

  conversation(peer) {
    let conv = this.conversations.get(peer);
    if (!conv) {
      conv = { with: peer, last_message: null, unread: 0 };
      this.conversations.set(peer, conv);
    }
    return conv;
  }

  /** Adds or merges one message; `live` counts it as unread if it is new to us. */
  addMessage(m, live) {
    if (!isMessage(m)) return;
    if (m.from === this.me) this.dropFromOutbox(m.client_id);
    const known = this.messages.get(m.id);
    if (known) {
      mergeStatus(known, m);
      return;
    }
    const message = { ...m };
    this.messages.set(message.id, message);
    const peer = this.peerOf(message);
    const ids = this.thread(peer).ids;
    let at = ids.length;
    while (at > 0 && ids[at - 1] > message.id) at -= 1;
    ids.splice(at, 0, message.id);
    const conv = this.conversation(peer);
    if (!conv.last_message || message.id >= conv.last_message.id) conv.last_message = message;
    if (message.to === this.me && message.status !== "read") {
      if (message.status === "sent") this.toDeliver.add(message.id);
      if (live && !this.isReading(peer)) conv.unread += 1;
    }
  }

  applyReceipt(data) {
    if (!data || !Array.isArray(data.ids) || !(data.status in RANK)) return;
    for (const id of data.ids) {
      const m = this.messages.get(id);
      if (m) mergeStatus(m, { status: data.status, [`${data.status}_at`]: data.at });
      const conv = m ? this.conversations.get(this.peerOf(m)) : null;
      if (conv && conv.last_message && conv.last_message !== m && conv.last_message.id === id) {
        mergeStatus(conv.last_message, { status: data.status });
      }
    }
    // Read on another device of ours: the server's unread counts are the truth.
    if (data.by === this.me && data.status === "read") this.refreshConversations();
  }

  // ---- receipts we send -------------------------------------------------------------

  async flushDelivered() {
    const ids = [...this.toDeliver].filter((id) => {
      const m = this.messages.get(id);
      return m && m.status === "sent" && !this.asked.delivered.has(id);
    });
    for (const id of this.toDeliver) if (!ids.includes(id)) this.toDeliver.delete(id);
    await this.mark("delivered", ids, () => ids.forEach((id) => this.toDeliver.delete(id)));
  }

  isReading(peer) {
    return this.openPeer === peer && document.visibilityState === "visible";
  }

  /** `read` for what is on screen: the open conversation, while the page is visible. */
  async markRead() {
    const peer = this.openPeer;
    if (!peer || !this.isReading(peer)) return;
    const ids = this.thread(peer).ids.filter((id) => {
      const m = this.messages.get(id);
      return m.to === this.me && m.status !== "read" && !this.asked.read.has(id);
    });
    const conv = this.conversations.get(peer);
    await this.mark("read", ids, (updated) => {
      if (conv) conv.unread = Math.max(0, conv.unread - updated);
      if (conv && conv.unread > 0) this.refreshConversations(); // older unread, not loaded
    });
  }

  async mark(event, ids, onDone) {
    if (!ids.length || !this.connected) return;
    const asked = this.asked[event];
    ids.forEach((id) => asked.add(id));
    let updated = 0;
    for (let i = 0; i < ids.length; i += MARK_BATCH) {
      const chunk = ids.slice(i, i + MARK_BATCH);
      const answer = await this.call(event, { ids: chunk });
      if (!answer.ok) {
        ids.forEach((id) => asked.delete(id)); // asked again on the next change
        return;
      }
      updated += answer.updated || 0;
    }
    onDone(updated);
    this.changed();
  }

  // ---- conversations and history --------------------------------------------------

  /** The server's list and unread counts; a call during one in flight runs once more. */
  async refreshConversations() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.refreshAgain = false;
        const data = await api.conversations(this.token);
        for (const item of data.conversations) {
          const conv = this.conversation(item.with);
          const known = this.messages.get(item.last_message.id);
          if (known) mergeStatus(known, item.last_message);
          const last = known || item.last_message;
          if (!conv.last_message || last.id >= conv.last_message.id) conv.last_message = last;
          conv.unread = this.isReading(item.with) ? 0 : item.unread;
        }
        this.changed();
      } while (this.refreshAgain && !this.stopped);
    } catch (err) {
      if (err instanceof ApiError && err.code === "unauthorized") {
        this.onSessionEnded("Your session has ended. Please log in again.");
      }
    } finally {
      this.refreshing = false;
    }
  }

  open(peer) {
    this.openPeer = peer;
    const thread = this.thread(peer);
    thread.error = null;
    this.conversation(peer);
    if (!thread.loaded) this.loadNewest(peer);
    this.markRead();
    this.changed();
  }

  close() {
    this.openPeer = null;
    this.changed();
  }

  /** The newest page: on open, and after each reconnect (statuses may have moved). */
  async loadNewest(peer) {
    const thread = this.thread(peer);
    if (thread.loading || !this.synced) return;
    thread.loading = true;
    this.changed();
    const answer = await this.call("history", { with: peer, limit: PAGE });
    thread.loading = false;
    if (answer.ok) {
      answer.messages.forEach((m) => this.addMessage(m, false));
      if (!thread.loaded) {
        thread.hasOlder = answer.has_more;
        thread.oldest = answer.messages.length ? answer.messages[0].id : null;
      }
      thread.loaded = true;
    } else if (answer.error && answer.error.code === "not_found") {
      thread.error = `There is no user called “${peer}”.`;
      const conv = this.conversations.get(peer);
      if (conv && !conv.last_message) this.conversations.delete(peer);
    } else if (answer.error && !RETRYABLE.has(answer.error.code)) {
      thread.error = answer.error.message;
    }
    this.afterApply();
  }

  /** Scroll-back: the page just older than the oldest message we hold. */
  async loadOlder(peer) {
    const thread = this.thread(peer);
    if (thread.loading || !thread.hasOlder || thread.oldest === null || !this.synced) return;
    thread.loading = true;
    this.changed();
    const answer = await this.call("history", { with: peer, before: thread.oldest, limit: PAGE });
    thread.loading = false;
    if (answer.ok) {
      answer.messages.forEach((m) => this.addMessage(m, false));
      thread.hasOlder = answer.has_more && answer.messages.length > 0;
      if (answer.messages.length) thread.oldest = answer.messages[0].id;
    }
    this.afterApply();
  }

  // ---- sending ----------------------------------------------------------------------

  send(to, body) {
    this.outbox.push({
      client_id: newClientId(),
      to,
      body,
      queued_at: new Date().toISOString(),
      state: "pending",
      error: null,
    });
    this.saveOutbox();
    this.changed();
    this.flushOutbox();
  }

  retry(clientId) {
    const item = this.outbox.find((i) => i.client_id === clientId);
    if (!item) return;
    item.state = "pending";
    item.error = null;
    this.saveOutbox();
    this.changed();
    this.flushOutbox();
  }

  discard(clientId) {
    this.dropFromOutbox(clientId);
    this.changed();
  }

  dropFromOutbox(clientId) {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((i) => i.client_id !== clientId);
    if (this.outbox.length !== before) this.saveOutbox();
  }

  saveOutbox() {
    storage.setOutbox(this.me, this.outbox);
  }

  /** Sends the outbox in order, one at a time, while connected and synced. */
  async flushOutbox() {
    if (this.flushing || !this.synced) return;
    this.flushing = true;
    try {
      for (;;) {
        const item = this.outbox.find((i) => i.state === "pending");
        if (!item || !this.synced) return;
        const answer = await this.call("send", {
          to: item.to,
          body: item.body,
          client_id: item.client_id,
        });
        if (answer.ok) {
          this.addMessage(answer.message, false);
          this.afterApply();
          continue;
        }
        const code = answer.error && answer.error.code;
        if (RETRYABLE.has(code)) {
          // Kept with its client_id: a resend cannot store it twice.
          if (this.connected) this.later(() => this.flushOutbox(), RETRY_MS);
          return;
        }
        item.state = "failed";
        item.error = (answer.error && answer.error.message) || "Not sent.";
        this.saveOutbox();
        this.changed();
      }
    } finally {
      this.flushing = false;
    }
  }

  // ---- for the UI -------------------------------------------------------------------

  unreadTotal() {
    let total = 0;
    for (const conv of this.conversations.values()) total += conv.unread;
    return total;
  }

  pendingCount() {
    return this.outbox.filter((i) => i.state === "pending").length;
  }
}

/** Statuses only move forward: sent -> delivered -> read (read implies delivered). */
function mergeStatus(into, from) {
  if (RANK[from.status] > RANK[into.status]) into.status = from.status;
  if (from.delivered_at && !into.delivered_at) into.delivered_at = from.delivered_at;
  if (from.read_at && !into.read_at) into.read_at = from.read_at;
  if (into.read_at && !into.delivered_at) into.delivered_at = into.read_at;
}
