// Typing indicators (docs/protocol.md 3.7): ephemeral, never stored, so both sides run
// on timers. We say `true` at most every 3 s while the user types, and `false` when
// they send, leave the box, or stop for 3 s; we show a peer as typing for at most 6 s
// after their last `true`, so a `false` lost on the way cannot leave it on.

export const REPEAT_MS = 3000;
export const IDLE_MS = 3000;
export const SHOW_MS = 6000;

/** Our side: turns keystrokes into few `typing` events. */
export class TypingSender {
  /** @param {(to: string, state: boolean) => void} emit */
  constructor(emit) {
    this.emit = emit;
    this.peer = null;
    this.sentAt = 0;
    this.idle = null;
  }

  /** The user changed the text of a message to `peer`; `empty` when none is left. */
  input(peer, empty) {
    if (empty) return this.stop();
    if (this.peer !== null && this.peer !== peer) this.stop();
    const now = Date.now();
    if (this.peer === null || now - this.sentAt >= REPEAT_MS) {
      this.emit(peer, true);
      this.sentAt = now;
    }
    this.peer = peer;
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.stop(), IDLE_MS);
  }

  /** Sent, left the box, idle, or switched conversation: `false` once, if we said `true`. */
  stop() {
    clearTimeout(this.idle);
    this.idle = null;
    if (this.peer === null) return;
    const peer = this.peer;
    this.peer = null;
    this.sentAt = 0;
    this.emit(peer, false);
  }

  /** Forgets without telling (the connection is gone; the server says `false` itself). */
  reset() {
    clearTimeout(this.idle);
    this.idle = null;
    this.peer = null;
    this.sentAt = 0;
  }
}

/** Their side: who is typing to us now. */
export class TypingWatcher {
  /** @param {() => void} onChange */
  constructor(onChange) {
    this.onChange = onChange;
    this.timers = new Map(); // peer -> timeout that ends their indicator
  }

  set(peer, state) {
    const was = this.timers.has(peer);
    clearTimeout(this.timers.get(peer));
    this.timers.delete(peer);
    if (state) {
      this.timers.set(
        peer,
        setTimeout(() => this.set(peer, false), SHOW_MS),
      );
    }
    if (was !== Boolean(state)) this.onChange();
  }

  isTyping(peer) {
    return this.timers.has(peer);
  }

  clear() {
    for (const timer of this.timers.values()) clearTimeout(timer);
    const had = this.timers.size > 0;
    this.timers.clear();
    if (had) this.onChange();
  }
}
