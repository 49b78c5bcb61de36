// The server's stream, in order and without gaps (docs/protocol.md 3.4). Every
// `new_message` / `receipt` / `message_updated` carries the user's stream cursor. We
// keep the last processed cursor in localStorage and pass it in `auth.cursor` when we
// (re)connect (connection.js), so the server replays exactly what we missed, then says
// `synced`; duplicates are dropped by message id (store.js). A change after send is a
// `message_updated` in the same stream, so the same cursor brings every device to the
// current state.
import { storage } from "./storage.js";

const EVENTS = ["new_message", "receipt", "message_updated"];

export class Stream {
  constructor(messenger) {
    this.messenger = messenger;
    this.cursor = storage.cursor(messenger.me);
    this.synced = false; // the replay of this connection is done
    this.queue = Promise.resolve(); // stream events are processed one at a time, in order
    const { connection } = messenger;
    for (const name of EVENTS) connection.on(name, (data) => this.enqueue(() => this.onEvent(name, data)));
    connection.on("synced", (data) => this.enqueue(() => this.onSynced(data)));
  }

  enqueue(task) {
    this.queue = this.queue.then(task).catch((err) => console.error("messenger:", err));
  }

  async onEvent(name, data) {
    if (!data || !Number.isSafeInteger(data.cursor)) return;
    // Before `synced` the backlog's cursors may skip (undelivered messages only); after
    // it every event is the previous cursor + 1, and a jump means we missed some.
    if (this.synced && this.cursor !== null && data.cursor > this.cursor + 1) {
      if (!(await this.catchUp())) {
        this.apply(name, data); // shown, but the cursor stays, so the gap is retried
        this.messenger.afterApply();
        return;
      }
    }
    this.apply(name, data);
    if (this.synced && (this.cursor === null || data.cursor > this.cursor)) {
      this.setCursor(data.cursor);
    }
    this.messenger.afterApply();
  }

  /** Fills a gap with `sync` from our cursor to the stream's head. */
  async catchUp() {
    const { connection } = this.messenger;
    const generation = connection.generation;
    for (;;) {
      const answer = await connection.call("sync", { after: this.cursor, limit: 500 });
      if (!answer.ok || generation !== connection.generation) return false;
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
    this.messenger.onSynced();
  }

  setCursor(cursor) {
    this.cursor = cursor;
    storage.setCursor(this.messenger.me, cursor);
  }

  apply(name, data) {
    const { store } = this.messenger;
    if (name === "new_message") store.addMessage(data.message, this.synced);
    else if (name === "receipt") store.applyReceipt(data);
    else if (name === "message_updated") store.applyUpdate(data);
  }
}
