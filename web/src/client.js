// The messenger's state and its Socket.IO connection, without any DOM.
//
// The server's stream is the truth: every `new_message` / `receipt` carries the
// user's stream cursor. We keep the last processed cursor in localStorage and pass it
// in `auth.cursor` when we (re)connect, so the server replays exactly what we missed;
// duplicates are dropped by message id. Messages typed while offline wait in an outbox
// in localStorage with their client_id, and are sent again after reconnecting: the
// server stores a client_id once, so a resend never makes a second message.
//
// After send a message can change (edit, delete, reactions): each change is a
// `message_updated` event in the same stream, showing the message as it is now, so
// the same cursor and the same merge by id bring every device to the current state.
import { io } from "socket.io-client";
import { ApiError, api } from "./api.js";
import { isMessage, mergeContent, quoteOf, withDefaults } from "./lifecycle.js";
import { storage } from "./storage.js";
import { TypingSender, TypingWatcher } from "./typing.js";

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

const NOTICE_MS = 6000;
// What a refused change says to the user, by error code (the server's text otherwise).
const ACTION_ERRORS = {
  offline: "You are offline: try again when you are connected.",
  timeout: "The server did not answer: try again.",
  not_found: "That message is no longer there.",
  too_large: "You can add at most 5 different reactions to a message.",
};

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
    this.notice = null; // a refused edit/delete/reaction, shown for a few seconds
    this.settings = null; // {read_receipts} once loaded
    this.settingsError = null;
    this.typingOut = new TypingSender((to, state) => this.emitTyping(to, state));
    this.typingIn = new TypingWatcher(() => this.changed());

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
      this.typingOut.reset();
      this.typingIn.clear();
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
    s.on("message_updated", (data) => this.enqueue(() => this.onStream("message_updated", data)));
    s.on("typing", (data) => this.onTyping(data));
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
    this.loadSettings();
  }

  connect() {
    if (this.stopped || this.socket.connected || !navigator.onLine) return;
    this.socket.connect();
  }

  stop() {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.typingOut.reset();
    this.typingIn.clear();
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
    if (this.settings === null) this.loadSettings();
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
    else if (name === "message_updated") this.applyUpdate(data);
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
    if (!isMessage(m, RANK)) return;
    if (m.from === this.me) this.dropFromOutbox(m.client_id);
    const known = this.messages.get(m.id);
    if (known) {
      this.merge(known, m);
      return;
    }
    const message = withDefaults(m);
    this.messages.set(message.id, message);
    if (message.hidden) return; // deleted for us: kept only so later events know it
    const peer = this.peerOf(message);
    const ids = this.thread(peer).ids;
    let at = ids.length;
    while (at > 0 && ids[at - 1] > message.id) at -= 1;
    ids.splice(at, 0, message.id);
    const conv = this.conversation(peer);
    if (!conv.last_message || message.id >= conv.last_message.id) conv.last_message = message;
    if (message.to === this.me && message.status !== "read") {
      if (message.status === "sent") this.toDeliver.add(message.id);
      if (live && !message.deleted && !this.isReading(peer)) conv.unread += 1;
    }
    if (message.from === peer) this.typingIn.set(peer, false); // it was sent: no longer typing
  }

  /** A newer view of a message we hold: status forward, content as 3.6 says. */
  merge(known, m) {
    mergeStatus(known, m);
    const wasHidden = known.hidden;
    if (mergeContent(known, m)) this.followQuotes(known);
    if (known.hidden && !wasHidden) this.hide(known);
  }

  /** Replies we hold show the replied-to message as it is now (3.1 `reply_to`). */
  followQuotes(original) {
    if (original.hidden) return;
    for (const m of this.messages.values()) {
      if (m.reply_to && m.reply_to.id === original.id && !m.deleted) m.reply_to = quoteOf(original);
    }
  }

  /** Deleted for us: out of the thread and the list; the server's counts are the truth. */
  hide(message) {
    const peer = this.peerOf(message);
    const thread = this.thread(peer);
    thread.ids = thread.ids.filter((id) => id !== message.id);
    const conv = this.conversations.get(peer);
    if (conv && conv.last_message && conv.last_message.id === message.id) {
      const newest = thread.ids[thread.ids.length - 1];
      conv.last_message = newest === undefined ? null : this.messages.get(newest);
    }
    this.refreshConversations();
  }

  /** `message_updated` (3.3): an edit, a delete, a reaction, or a delete for us. */
  applyUpdate(data) {
    const m = data && data.message;
    if (!isMessage(m, RANK)) return;
    const known = this.messages.get(m.id);
    if (known) this.merge(known, m);
    else {
      // Not loaded (history brings it as it is now), but it may be in the list's preview.
      const conv = this.conversations.get(m.from === this.me ? m.to : m.from);
      const last = conv && conv.last_message;
      if (last && last.id === m.id) {
        mergeStatus(last, m);
        mergeContent(last, m);
        if (last.hidden) this.refreshConversations();
      }
    }
    // A deleted message no longer counts as unread: take the server's count again.
    if ((data.change === "deleted" || m.deleted) && m.to === this.me) this.refreshConversations();
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
      return m && m.to === this.me && m.status !== "read" && !this.asked.read.has(id);
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
          if (known) this.merge(known, item.last_message);
          const last = known || withDefaults(item.last_message);
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

  /** Queues a message; `replyTo`, a message we hold, makes it a reply (3.2 `send`). */
  send(to, body, replyTo = null) {
    this.typingOut.stop();
    this.outbox.push({
      client_id: newClientId(),
      to,
      body,
      // The quote as it was when written, shown until the server's answer replaces it.
      reply_to: replyTo ? quoteOf(replyTo) : null,
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
        const payload = { to: item.to, body: item.body, client_id: item.client_id };
        if (item.reply_to && Number.isSafeInteger(item.reply_to.id)) payload.reply_to = item.reply_to.id;
        const answer = await this.call("send", payload);
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

  // ---- after send: edit, delete, react (3.6) -----------------------------------------

  /** Each change is answered after its commit; the same change also comes in the
   * stream (`message_updated`), which is what other devices go by. Changes need the
   * connection: unlike a new message they are not kept for later. */
  async change(event, payload) {
    const answer = await this.call(event, payload);
    if (answer.ok) {
      if (answer.message) this.addMessage(answer.message, false);
      this.afterApply();
      return true;
    }
    const error = answer.error || {};
    this.say(ACTION_ERRORS[error.code] || error.message || "That did not work.");
    return false;
  }

  edit(id, body) {
    const m = this.messages.get(id);
    if (m && m.body === body) return Promise.resolve(true);
    this.typingOut.stop();
    return this.change("edit", { id, body, client_id: newClientId() });
  }

  /** `scope`: "me" (only our view) or "everyone" (a tombstone for both). */
  async remove(id, scope) {
    const done = await this.change("delete", { id, for: scope });
    const m = this.messages.get(id);
    if (done && scope === "me" && m && !m.hidden) this.merge(m, { ...m, hidden: true });
    if (done) this.changed();
    return done;
  }

  react(id, emoji) {
    return this.change("react", { id, emoji });
  }

  unreact(id, emoji) {
    return this.change("unreact", { id, emoji });
  }

  say(text) {
    const notice = { text };
    this.notice = notice;
    this.changed();
    this.later(() => {
      if (this.notice === notice) this.notice = null;
      this.changed();
    }, NOTICE_MS);
  }

  // ---- typing (3.7) -------------------------------------------------------------------

  /** The composer's text for `peer` changed. */
  typed(peer, text) {
    this.typingOut.input(peer, !text.trim());
  }

  stoppedTyping() {
    this.typingOut.stop();
  }

  emitTyping(to, state) {
    // No acknowledgement: it is worth nothing once late (3.7).
    if (this.socket.connected) this.socket.emit("typing", { to, state });
  }

  onTyping(data) {
    if (!data || typeof data.from !== "string" || typeof data.state !== "boolean") return;
    this.typingIn.set(data.from, data.state);
  }

  isTyping(peer) {
    return this.typingIn.isTyping(peer);
  }

  // ---- settings (3.8) -----------------------------------------------------------------

  async loadSettings() {
    try {
      this.settings = await api.settings(this.token);
      this.settingsError = null;
    } catch (err) {
      if (err instanceof ApiError && err.code === "unauthorized") {
        this.onSessionEnded("Your session has ended. Please log in again.");
        return;
      }
      this.settingsError = "Settings cannot be loaded now.";
    }
    this.changed();
  }

  /** Private reading: with `false` senders learn at most `delivered` of our reads. */
  async setReadReceipts(on) {
    const before = this.settings;
    this.settings = { ...(before || {}), read_receipts: on, saving: true };
    this.settingsError = null;
    this.changed();
    try {
      this.settings = await api.saveSettings(this.token, { read_receipts: on });
    } catch (err) {
      this.settings = before;
      this.settingsError = err instanceof ApiError ? err.message : "Not saved.";
    }
    this.changed();
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
