// The Socket.IO connection: connecting, reconnecting where the library does not, the
// network going away and coming back, and calls that wait for the server's answer.
// Each module listens to its own events through `on` (stream.js: the stream).
import { io } from "socket.io-client";

const ACK_TIMEOUT_MS = 10000;
export const RETRY_MS = 3000;
// Errors after which the same call may succeed later; others are final (they fail a send).
export const RETRYABLE = new Set(["unavailable", "rate_limited", "internal", "timeout", "offline"]);

export class Connection {
  constructor(messenger) {
    this.messenger = messenger;
    this.connected = false;
    this.online = navigator.onLine;
    this.generation = 0; // bumped per connection; stale async work checks it
    this.socket = io({
      path: "/socket.io",
      // Websocket first; polling when websockets are blocked on the way.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      autoConnect: false,
      reconnectionDelayMax: 5000,
      // A function, so every reconnect sends the cursor as it is then.
      auth: (cb) => {
        const { token, stream } = messenger;
        cb(stream.cursor === null ? { token } : { token, cursor: stream.cursor });
      },
    });
    this.listen();
  }

  listen() {
    const s = this.socket;
    const messenger = this.messenger;
    s.on("connect", () => {
      this.generation += 1;
      this.connected = true;
      messenger.onConnect();
    });
    s.on("disconnect", (reason) => {
      this.connected = false;
      messenger.onDisconnect();
      // The server closed us (token revoked, node stopping): the client library does
      // not retry that by itself. A dead token is then refused at connect.
      if (reason === "io server disconnect") messenger.later(() => this.connect(), RETRY_MS);
    });
    s.on("connect_error", (err) => {
      const code = err && err.data && err.data.code;
      if (code === "unauthorized") {
        messenger.sessionEnded();
        return;
      }
      // A refusal with data (e.g. `unavailable`) is not retried by the library.
      if (err && err.data) messenger.later(() => this.connect(), RETRY_MS);
      messenger.changed();
    });

    this.onOffline = () => {
      // Browsers keep an open websocket through a network change and notice only at
      // the next ping timeout; say goodbye now and reconnect when the network is back.
      this.online = false;
      this.socket.disconnect();
      messenger.changed();
    };
    this.onOnline = () => {
      this.online = true;
      this.connect();
      messenger.changed();
    };
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
  }

  on(event, handler) {
    this.socket.on(event, handler);
  }

  connect() {
    if (this.messenger.stopped || this.socket.connected || !navigator.onLine) return;
    this.socket.connect();
  }

  stop() {
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    this.socket.off();
    this.socket.disconnect();
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

  /** Without an answer, and only while connected: for what is worthless once late. */
  emit(event, payload) {
    if (this.socket.connected) this.socket.emit(event, payload);
  }
}
