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
          conv.removed = item.removed === true; // the peer deleted their account
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
  loadNewest(peer) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    if (thread.loading || !messenger.stream.synced) return thread.busy || Promise.resolve();
    return this.exclusive(thread, async () => {
      const answer = await messenger.connection.call("history", { with: peer, limit: PAGE });
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
    });
  }

  /** Scroll-back: the page just older than the oldest message we hold. */
  loadOlder(peer) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    if (thread.loading || !thread.hasOlder || thread.oldest === null || !messenger.stream.synced) {
      return Promise.resolve();
    }
    return this.exclusive(thread, async () => {
      const page = { with: peer, before: thread.oldest, limit: PAGE };
      const answer = await messenger.connection.call("history", page);
      if (answer.ok) {
        answer.messages.forEach((m) => store.addMessage(m, false));
        thread.hasOlder = answer.has_more && answer.messages.length > 0;
        if (answer.messages.length) thread.oldest = answer.messages[0].id;
      }
    });
  }

  /**
   * Shows message `id` of `peer`'s conversation (a search result): `thread.target` asks
   * the view to scroll to it. Older than what we hold, the page ending with it is
   * loaded first; the messages between it and what we held are a gap, filled a page at
   * a time when it comes into view (`fillGap`).
   */
  async jumpTo(peer, id) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    thread.target = id;
    messenger.changed();
    while (thread.busy) await thread.busy;
    if (!thread.loaded) await this.loadNewest(peer);
    if (thread.target !== id || thread.ids.includes(id)) return;
    if (!thread.loaded) {
      thread.target = null; // not connected (or not yet synced): nothing to page through
      messenger.changes.say("The conversation cannot be loaded now: try again in a moment.");
      return;
    }
    let failed = null;
    if (thread.oldest !== null && id < thread.oldest) {
      await this.exclusive(thread, async () => {
        const answer = await messenger.connection.call("history", { with: peer, before: id + 1, limit: PAGE });
        if (!answer.ok) failed = answer.error || {};
        if (!answer.ok || !answer.messages.length) return;
        const held = thread.oldest;
        answer.messages.forEach((m) => store.addMessage(m, false));
        thread.oldest = answer.messages[0].id;
        thread.hasOlder = answer.has_more;
        const last = answer.messages[answer.messages.length - 1].id;
        if (last < held) thread.gaps.push({ after: last, before: held });
      });
    }
    if (thread.target === id && !thread.ids.includes(id)) {
      thread.target = null; // deleted since it was found, or not reachable now
      messenger.changes.say(
        !failed
          ? "That message is no longer there."
          : failed.code === "offline"
            ? "You are offline: try again when you are connected."
            : failed.message || "The conversation cannot be loaded now.",
      );
    }
  }

  /** The next page of a gap left by `jumpTo`; it closes once it reaches what we held. */
  fillGap(peer, gap) {
    const messenger = this.messenger;
    const { store } = messenger;
    const thread = store.thread(peer);
    if (thread.loading || !thread.gaps.includes(gap) || !messenger.stream.synced) return Promise.resolve();
    return this.exclusive(thread, async () => {
      const answer = await messenger.connection.call("history", { with: peer, after: gap.after, limit: PAGE });
      if (!answer.ok) return;
      answer.messages.forEach((m) => store.addMessage(m, false));
      const last = answer.messages.length ? answer.messages[answer.messages.length - 1].id : null;
      if (last === null || last >= gap.before || !answer.has_more) {
        thread.gaps = thread.gaps.filter((g) => g !== gap);
      } else gap.after = last;
    });
  }

  /** One history call at a time per thread: `thread.busy` is the one running. */
  async exclusive(thread, work) {
    const messenger = this.messenger;
    thread.loading = true;
    messenger.changed();
    const running = (async () => {
      try {
        await work();
      } finally {
        thread.loading = false;
        thread.busy = null;
      }
    })();
    thread.busy = running;
    await running;
    messenger.afterApply();
  }
}
