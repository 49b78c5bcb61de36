// The messenger's state and its Socket.IO connection, without any DOM: the one object
// the views (ui.js) hold. Each job is a module of its own, and they reach each other
// through this object:
//   connection.js  the socket: connecting, reconnecting, calls with an answer
//   stream.js      the stream cursor: events in order, gaps filled, replay on reconnect
//   store.js       messages, threads and the conversation list, merged by id
//   history.js     the conversation list and history pages from the server
//   receipts.js    the `delivered` and `read` we send
//   outbox.js      messages waiting to be sent, kept across reloads, with their files
//                  (files.js: IndexedDB; uploads.js: the upload)
//   changes.js     after send: edit, delete, react
//   settings.js    the user's settings (read receipts)
//   search.js      searching our messages (`search`), a page at a time
//   push.js        notifications on this browser (service worker, Web Push)
//   typing.js      typing indicators, both ways
// What happens across modules (a new connection, the end of a replay) is here.
import { api } from "./api.js";
import { Changes } from "./changes.js";
import { Connection } from "./connection.js";
import { files } from "./files.js";
import { History } from "./history.js";
import { Outbox } from "./outbox.js";
import { PushSetting } from "./push.js";
import { Receipts } from "./receipts.js";
import { Search } from "./search.js";
import { Settings } from "./settings.js";
import { storage } from "./storage.js";
import { Store } from "./store.js";
import { Stream } from "./stream.js";
import { TypingSender, TypingWatcher } from "./typing.js";

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
    this.openPeer = null;
    this.stopped = false;
    this.timers = new Set();
    this.store = new Store(this);
    this.outgoing = new Outbox(this);
    this.connection = new Connection(this);
    this.stream = new Stream(this); // listens on the connection: after it
    this.receipts = new Receipts(this);
    this.history = new History(this);
    this.changes = new Changes(this);
    this.prefs = new Settings(this);
    this.push = new PushSetting(this);
    this.search = new Search(this);
    this.typingOut = new TypingSender((to, state) => this.emitTyping(to, state));
    this.typingIn = new TypingWatcher(() => this.changed());
    this.connection.on("typing", (data) => this.onTyping(data));
  }

  // ---- lifecycle ----------------------------------------------------------------

  start() {
    this.changed();
    this.connection.connect();
    this.history.refreshConversations();
    this.prefs.load();
    this.push.start();
  }

  stop() {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.typingOut.reset();
    this.typingIn.clear();
    this.receipts.stop();
    this.outgoing.stop();
    this.connection.stop();
  }

  async logout() {
    this.stop();
    await this.push.forget();
    try {
      await api.logout(this.token);
    } catch {
      // Offline or already revoked: forgetting it here is what matters.
    }
    storage.forget(this.me);
    await files.forget(this.me);
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

  sessionEnded() {
    this.onSessionEnded("Your session has ended. Please log in again.");
  }

  // ---- across modules -------------------------------------------------------------

  /** Connected: the server replays what we missed, then says `synced`. */
  onConnect() {
    this.stream.synced = false;
    this.changed();
  }

  onDisconnect() {
    this.stream.synced = false;
    this.receipts.forget();
    this.typingOut.reset();
    this.typingIn.clear();
    this.changed();
  }

  /** The replay is done: refresh what may have moved meanwhile, then send the outbox. */
  onSynced() {
    this.history.refreshConversations();
    if (this.prefs.value === null) this.prefs.load();
    if (this.openPeer) this.history.loadNewest(this.openPeer);
    this.afterApply();
    this.outgoing.flush();
  }

  /** After messages came in: receipts for them, then a render. */
  afterApply() {
    this.receipts.flushDelivered();
    this.receipts.markRead();
    this.changed();
  }

  // ---- the open conversation ------------------------------------------------------

  open(peer) {
    this.openPeer = peer;
    const thread = this.store.thread(peer);
    thread.error = null;
    this.store.conversation(peer);
    if (!thread.loaded) this.history.loadNewest(peer);
    this.receipts.markRead();
    this.changed();
  }

  close() {
    this.openPeer = null;
    this.changed();
  }

  isReading(peer) {
    return this.openPeer === peer && document.visibilityState === "visible";
  }

  // ---- typing (3.7) ---------------------------------------------------------------

  /** The composer's text for `peer` changed. */
  typed(peer, text) {
    this.typingOut.input(peer, !text.trim());
  }

  stoppedTyping() {
    this.typingOut.stop();
  }

  emitTyping(to, state) {
    // No acknowledgement: it is worth nothing once late (3.7).
    this.connection.emit("typing", { to, state });
  }

  onTyping(data) {
    if (!data || typeof data.from !== "string" || typeof data.state !== "boolean") return;
    this.typingIn.set(data.from, data.state);
  }

  isTyping(peer) {
    return this.typingIn.isTyping(peer);
  }

  // ---- for the UI: what to show ---------------------------------------------------

  get connected() {
    return this.connection.connected;
  }

  get online() {
    return this.connection.online;
  }

  get messages() {
    return this.store.messages;
  }

  get conversations() {
    return this.store.conversations;
  }

  get outbox() {
    return this.outgoing.items;
  }

  get notice() {
    return this.changes.notice;
  }

  get settings() {
    return this.prefs.value;
  }

  get settingsError() {
    return this.prefs.error;
  }

  thread(peer) {
    return this.store.thread(peer);
  }

  unreadTotal() {
    return this.store.unreadTotal();
  }

  pendingCount() {
    return this.outgoing.pendingCount();
  }

  // ---- for the UI: what the user does ---------------------------------------------

  loadOlder(peer) {
    return this.history.loadOlder(peer);
  }

  /** Scrolls `peer`'s open conversation to message `id`, loading its page if needed. */
  jumpTo(peer, id) {
    return this.history.jumpTo(peer, id);
  }

  /** The next page of a gap a jump left in `peer`'s conversation. */
  fillGap(peer, gap) {
    return this.history.fillGap(peer, gap);
  }

  /** Queues a message; `replyTo`, a message we hold, makes it a reply; `chosen`: Files. */
  send(to, body, replyTo = null, chosen = []) {
    this.typingOut.stop();
    this.outgoing.send(to, body, replyTo, chosen);
  }

  retry(clientId) {
    this.outgoing.retry(clientId);
  }

  discard(clientId) {
    this.outgoing.discard(clientId);
  }

  edit(id, body) {
    return this.changes.edit(id, body);
  }

  /** `scope`: "me" (only our view) or "everyone" (a tombstone for both). */
  remove(id, scope) {
    return this.changes.remove(id, scope);
  }

  react(id, emoji) {
    return this.changes.react(id, emoji);
  }

  unreact(id, emoji) {
    return this.changes.unreact(id, emoji);
  }

  setReadReceipts(on) {
    return this.prefs.setReadReceipts(on);
  }

  /** Notifications on this browser: `on` is the user's click (it may ask permission). */
  setNotifications(on) {
    return on ? this.push.enable() : this.push.disable();
  }

  setNotificationPreview(on) {
    return this.push.setPreview(on);
  }
}
