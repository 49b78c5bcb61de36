// What we hold: every message by id (one object per id, updated in place), each
// conversation's thread of ids, and the conversation list. Messages from the stream,
// from history pages and from our own calls' answers all merge here by id, so a
// duplicate changes nothing and a later state (lifecycle.js) reaches what is on screen.
import { isMessage, mergeContent, quoteOf, withDefaults } from "./lifecycle.js";

export const RANK = { sent: 1, delivered: 2, read: 3 };

export class Store {
  constructor(messenger) {
    this.messenger = messenger;
    this.messages = new Map(); // id -> Message (one object per id, updated in place)
    this.threads = new Map(); // peer -> {ids, oldest, hasOlder, loaded, loading, error}
    this.conversations = new Map(); // peer -> {with, last_message, unread, removed}
  }

  peerOf(m) {
    return m.from === this.messenger.me ? m.to : m.from;
  }

  thread(peer) {
    let thread = this.threads.get(peer);
    if (!thread) {
      // `oldest`: where scroll-back continues, the oldest id of the history pages we
      // loaded; older ids may be held already (an undelivered backlog), not the gap.
      // `gaps`: [{after, before}] ids not loaded between a search result's page and
      // what was held (history.js `jumpTo`); `target`: the id the view scrolls to.
      thread = {
        ids: [],
        oldest: null,
        hasOlder: false,
        loaded: false,
        loading: false,
        error: null,
        gaps: [],
        target: null,
      };
      this.threads.set(peer, thread);
    }
    return thread;
  }

  conversation(peer) {
    let conv = this.conversations.get(peer);
    if (!conv) {
      conv = { with: peer, last_message: null, unread: 0, removed: false };
      this.conversations.set(peer, conv);
    }
    return conv;
  }

  /** Adds or merges one message; `live` counts it as unread if it is new to us. */
  addMessage(m, live) {
    const messenger = this.messenger;
    if (!isMessage(m, RANK)) return;
    if (m.from === messenger.me) messenger.outgoing.drop(m.client_id);
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
    if (message.to === messenger.me && message.status !== "read") {
      if (message.status === "sent") messenger.receipts.toDeliver.add(message.id);
      if (live && !message.deleted && !messenger.isReading(peer)) conv.unread += 1;
    }
    if (message.from === peer) messenger.typingIn.set(peer, false); // it was sent: no longer typing
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
    this.messenger.history.refreshConversations();
  }

  /** `message_updated` (3.3): an edit, a delete, a reaction, or a delete for us. */
  applyUpdate(data) {
    const m = data && data.message;
    if (!isMessage(m, RANK)) return;
    const known = this.messages.get(m.id);
    if (known) this.merge(known, m);
    else {
      // Not loaded (history brings it as it is now), but it may be in the list's preview.
      const conv = this.conversations.get(this.peerOf(m));
      const last = conv && conv.last_message;
      if (last && last.id === m.id) {
        mergeStatus(last, m);
        mergeContent(last, m);
        if (last.hidden) this.messenger.history.refreshConversations();
      }
    }
    // A deleted message no longer counts as unread: take the server's count again.
    if ((data.change === "deleted" || m.deleted) && m.to === this.messenger.me) {
      this.messenger.history.refreshConversations();
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
    if (data.by === this.messenger.me && data.status === "read") {
      this.messenger.history.refreshConversations();
    }
  }

  unreadTotal() {
    let total = 0;
    for (const conv of this.conversations.values()) total += conv.unread;
    return total;
  }
}

/** Statuses only move forward: sent -> delivered -> read (read implies delivered). */
function mergeStatus(into, from) {
  if (RANK[from.status] > RANK[into.status]) into.status = from.status;
  if (from.delivered_at && !into.delivered_at) into.delivered_at = from.delivered_at;
  if (from.read_at && !into.read_at) into.read_at = from.read_at;
  if (into.read_at && !into.delivered_at) into.delivered_at = into.read_at;
}
