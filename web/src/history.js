// What the stream does not bring: the conversation list with the server's unread
// counts (HTTP), and a conversation's history a page at a time (`history`). Both
// merge into the store by id, like the stream.
import { ApiError, api } from "./api.js";
import { RETRYABLE } from "./connection.js";
import { withDefaults } from "./lifecycle.js";

const PAGE = 50;

export class History {
  constructor(messenger) {
    this.messenger = messenger;
    this.refreshing = false;
    this.refreshAgain = false;
  }

  /** The server's list and unread counts; a call during one in flight runs once more. */
  async refreshConversations() {
    const messenger = this.messenger;
    const { store } = messenger;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.refreshAgain = false;
        const data = await api.conversations(messenger.token);
        for (const item of data.conversations) {
          const conv = store.conversation(item.with);
          const known = store.messages.get(item.last_message.id);
          if (known) store.merge(known, item.last_message);
          const last = known || withDefaults(item.last_message);
          if (!conv.last_message || last.id >= conv.last_message.id) conv.last_message = last;
          conv.unread = messenger.isReading(item.with) ? 0 : item.unread;
        }
        messenger.changed();
      } while (this.refreshAgain && !messenger.stopped);
    } catch (err) {
      if (err instanceof ApiError && err.code === "unauthorized") messenger.sessionEnded();
    } finally {
      this.refreshing = false;
    }
  }

  /** The newest page: on open, and after each reconnect (statuses may have moved). */
  async loadNewest(peer) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    if (thread.loading || !messenger.stream.synced) return;
    thread.loading = true;
    messenger.changed();
    const answer = await messenger.connection.call("history", { with: peer, limit: PAGE });
    thread.loading = false;
    if (answer.ok) {
      answer.messages.forEach((m) => store.addMessage(m, false));
      if (!thread.loaded) {
        thread.hasOlder = answer.has_more;
        thread.oldest = answer.messages.length ? answer.messages[0].id : null;
      }
      thread.loaded = true;
    } else if (answer.error && answer.error.code === "not_found") {
      thread.error = `There is no user called “${peer}”.`;
      const conv = store.conversations.get(peer);
      if (conv && !conv.last_message) store.conversations.delete(peer);
    } else if (answer.error && !RETRYABLE.has(answer.error.code)) {
      thread.error = answer.error.message;
    }
    messenger.afterApply();
  }

  /** Scroll-back: the page just older than the oldest message we hold. */
  async loadOlder(peer) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    if (thread.loading || !thread.hasOlder || thread.oldest === null || !messenger.stream.synced) return;
    thread.loading = true;
    messenger.changed();
    const page = { with: peer, before: thread.oldest, limit: PAGE };
    const answer = await messenger.connection.call("history", page);
    thread.loading = false;
    if (answer.ok) {
      answer.messages.forEach((m) => store.addMessage(m, false));
      thread.hasOlder = answer.has_more && answer.messages.length > 0;
      if (answer.messages.length) thread.oldest = answer.messages[0].id;
    }
    messenger.afterApply();
  }
}
