// After send: edit, delete, react (docs/protocol.md 3.6). Each change is answered after
// its commit; the same change also comes in the stream (`message_updated`), which is
// what other devices go by. Changes need the connection: unlike a new message they are
// not kept for later, so a refused one is said to the user for a few seconds instead.
import { newClientId } from "./outbox.js";

const NOTICE_MS = 6000;
// What a refused change says to the user, by error code (the server's text otherwise).
const ACTION_ERRORS = {
  offline: "You are offline: try again when you are connected.",
  timeout: "The server did not answer: try again.",
  not_found: "That message is no longer there.",
  too_large: "You can add at most 5 different reactions to a message.",
};

export class Changes {
  constructor(messenger) {
    this.messenger = messenger;
    this.notice = null; // a refused edit/delete/reaction, shown for a few seconds
  }

  async change(event, payload) {
    const messenger = this.messenger;
    const answer = await messenger.connection.call(event, payload);
    if (answer.ok) {
      if (answer.message) messenger.store.addMessage(answer.message, false);
      messenger.afterApply();
      return true;
    }
    const error = answer.error || {};
    this.say(ACTION_ERRORS[error.code] || error.message || "That did not work.");
    return false;
  }

  edit(id, body) {
    const m = this.messenger.store.messages.get(id);
    if (m && m.body === body) return Promise.resolve(true);
    this.messenger.typingOut.stop();
    return this.change("edit", { id, body, client_id: newClientId() });
  }

  /** `scope`: "me" (only our view) or "everyone" (a tombstone for both). */
  async remove(id, scope) {
    const { store } = this.messenger;
    const done = await this.change("delete", { id, for: scope });
    const m = store.messages.get(id);
    if (done && scope === "me" && m && !m.hidden) store.merge(m, { ...m, hidden: true });
    if (done) this.messenger.changed();
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
    this.messenger.changed();
    this.messenger.later(() => {
      if (this.notice === notice) this.notice = null;
      this.messenger.changed();
    }, NOTICE_MS);
  }
}
