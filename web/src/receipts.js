// The receipts we send (docs/protocol.md 3.2): `delivered` for every message that
// reached us, `read` for what is on screen (the open conversation, while the page is
// visible). An id is asked for once per connection; a refused batch is asked again on
// the next change.
const MARK_BATCH = 500;

export class Receipts {
  constructor(messenger) {
    this.messenger = messenger;
    this.toDeliver = new Set(); // ids of messages to us still `sent`
    this.asked = { delivered: new Set(), read: new Set() };
    // Coming back to the page reads what it shows.
    this.onVisibility = () => this.markRead();
    document.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("focus", this.onVisibility);
  }

  stop() {
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("focus", this.onVisibility);
  }

  /** A new connection asks again for what the last one may not have answered. */
  forget() {
    this.asked.delivered.clear();
    this.asked.read.clear();
  }

  async flushDelivered() {
    const { messages } = this.messenger.store;
    const ids = [...this.toDeliver].filter((id) => {
      const m = messages.get(id);
      return m && m.status === "sent" && !this.asked.delivered.has(id);
    });
    for (const id of this.toDeliver) if (!ids.includes(id)) this.toDeliver.delete(id);
    await this.mark("delivered", ids, () => ids.forEach((id) => this.toDeliver.delete(id)));
  }

  /** `read` for what is on screen: the open conversation, while the page is visible. */
  async markRead() {
    const messenger = this.messenger;
    const { store } = messenger;
    const peer = messenger.openPeer;
    if (!peer || !messenger.isReading(peer)) return;
    const ids = store.thread(peer).ids.filter((id) => {
      const m = store.messages.get(id);
      return m && m.to === messenger.me && m.status !== "read" && !this.asked.read.has(id);
    });
    const conv = store.conversations.get(peer);
    await this.mark("read", ids, (updated) => {
      if (conv) conv.unread = Math.max(0, conv.unread - updated);
      if (conv && conv.unread > 0) messenger.history.refreshConversations(); // older unread, not loaded
    });
  }

  async mark(event, ids, onDone) {
    const { connection } = this.messenger;
    if (!ids.length || !connection.connected) return;
    const asked = this.asked[event];
    ids.forEach((id) => asked.add(id));
    let updated = 0;
    for (let i = 0; i < ids.length; i += MARK_BATCH) {
      const chunk = ids.slice(i, i + MARK_BATCH);
      const answer = await connection.call(event, { ids: chunk });
      if (!answer.ok) {
        ids.forEach((id) => asked.delete(id)); // asked again on the next change
        return;
      }
      updated += answer.updated || 0;
    }
    onDone(updated);
    this.messenger.changed();
  }
}
