// The user's settings (docs/protocol.md 3.8), over HTTP: for now whether our reads are
// told to senders. A change shows at once and goes back if the server refuses it.
import { ApiError, api } from "./api.js";

export class Settings {
  constructor(messenger) {
    this.messenger = messenger;
    this.value = null; // {read_receipts} once loaded; `saving` while a change is on its way
    this.error = null;
  }

  async load() {
    const messenger = this.messenger;
    try {
      this.value = await api.settings(messenger.token);
      this.error = null;
    } catch (err) {
      if (err instanceof ApiError && err.code === "unauthorized") {
        messenger.sessionEnded();
        return;
      }
      this.error = "Settings cannot be loaded now.";
    }
    messenger.changed();
  }

  /** Private reading: with `false` senders learn at most `delivered` of our reads. */
  async setReadReceipts(on) {
    const messenger = this.messenger;
    const before = this.value;
    this.value = { ...(before || {}), read_receipts: on, saving: true };
    this.error = null;
    messenger.changed();
    try {
      this.value = await api.saveSettings(messenger.token, { read_receipts: on });
    } catch (err) {
      this.value = before;
      this.error = err instanceof ApiError ? err.message : "Not saved.";
    }
    messenger.changed();
  }
}
