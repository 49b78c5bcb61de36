// Notifications on this browser (docs/protocol.md 3.9): the service worker (sw.js) and
// a Web Push subscription, given to the server. Off by default; turning it on is the
// user's click, and only that click asks the browser's permission. Once on, a later
// start (a reload, the next login of the same user) renews the subscription quietly, so
// the server always has this session's and the browser's current one.
import { ApiError, api } from "./api.js";
import { storage } from "./storage.js";

const WORKER_URL = "/sw.js";
const ACTIVE_WAIT_MS = 10000;
const LABEL_MAX = 64;

/** The browser can do Web Push here (it needs a secure context: https or localhost). */
export function pushSupported() {
  return (
    typeof window !== "undefined" &&
    window.isSecureContext &&
    "serviceWorker" in navigator &&
    "PushManager" in window &&
    "Notification" in window
  );
}

/** A failure with the sentence the settings show; `offline` when only the network was. */
class PushFailure extends Error {
  constructor(message, offline = false) {
    super(message);
    this.offline = offline;
  }
}

const offline = (err) => err instanceof ApiError && err.code === "offline";

export class PushSetting {
  constructor(messenger) {
    this.messenger = messenger;
    this.supported = pushSupported();
    const saved = storage.push(messenger.me);
    this.id = saved.id; // the server's subscription id while on
    this.preview = saved.preview;
    this.busy = false;
    this.error = null;
  }

  get on() {
    return this.id !== null;
  }

  /** At start: if it was on, renew it (permission is already given, no prompt). */
  async start() {
    if (!this.on) return;
    if (!this.supported || Notification.permission !== "granted") {
      // Permission taken back in the browser's settings: it is off now, here and there.
      const id = this.id;
      this.setId(null);
      this.error = "Notifications were turned off: this browser no longer allows them for this site.";
      this.messenger.changed();
      await this.deleteOnServer(id);
      return;
    }
    await this.run(async () => {
      try {
        await this.subscribe(false);
      } catch (err) {
        if (!err.offline) throw err; // offline: still on, the next start tries again
      }
    });
  }

  /** The user's click: permission, worker, browser subscription, then the server. */
  async enable() {
    if (this.busy || this.on) return;
    if (!this.supported) {
      this.error = "This browser cannot show notifications from this site.";
      this.messenger.changed();
      return;
    }
    this.busy = true;
    this.error = null;
    this.messenger.changed();
    // First, while the click still counts as the user's: browsers ask only then.
    let permission;
    try {
      permission = await Notification.requestPermission();
    } catch {
      permission = "default";
    }
    if (permission !== "granted") {
      this.busy = false;
      this.error =
        permission === "denied"
          ? "Notifications are blocked for this site. Allow them in the browser's site settings, then try again."
          : "Notifications were not allowed.";
      this.messenger.changed();
      return;
    }
    await this.run(() => this.subscribe(true));
  }

  /** Off: the browser's subscription ends and the server forgets it. */
  async disable() {
    if (this.busy || !this.on) return;
    const id = this.id;
    this.busy = true;
    this.error = null;
    this.messenger.changed();
    await unsubscribeBrowser();
    await closeNotifications();
    this.setId(null);
    await this.deleteOnServer(id);
    this.busy = false;
    this.messenger.changed();
  }

  /** Previews (sender and text in the push): kept for next time, and sent now if on. */
  async setPreview(on) {
    if (this.busy) return;
    const before = this.preview;
    this.preview = on;
    this.save();
    if (!this.on) {
      this.messenger.changed();
      return;
    }
    this.busy = true;
    this.error = null;
    this.messenger.changed();
    try {
      await this.subscribe(false); // the same endpoint: the server updates it (200)
    } catch (err) {
      if (err instanceof ApiError) {
        this.busy = false;
        this.messenger.sessionEnded();
        return;
      }
      this.preview = before;
      this.save();
      this.error = err.message;
    }
    this.busy = false;
    this.messenger.changed();
  }

  /** Logging out: the server drops the session's subscriptions; this drops the browser's. */
  async forget() {
    this.id = null;
    if (!this.supported) return;
    await unsubscribeBrowser();
    await closeNotifications();
  }

  // ---- the steps ------------------------------------------------------------------

  /** A step that ends on or off: a failure turns it off, with its sentence. */
  async run(step) {
    this.busy = true;
    this.error = null;
    this.messenger.changed();
    try {
      await step();
    } catch (err) {
      if (err instanceof ApiError) {
        this.busy = false;
        this.messenger.sessionEnded(); // the only ApiError let through: unauthorized
        return;
      }
      this.setId(null);
      this.error = err instanceof PushFailure ? err.message : "Notifications could not be turned on.";
    }
    this.busy = false;
    this.messenger.changed();
  }

  /**
   * Worker, browser subscription, then `POST` it (a known endpoint is updated: 200).
   * `fresh`: turning on; if the server refuses, the browser's subscription ends too.
   */
  async subscribe(fresh) {
    const registration = await registerWorker();
    const key = await vapidKey();
    const subscription = await browserSubscription(registration, key);
    const { endpoint, keys } = subscription.toJSON();
    let made;
    try {
      made = await api.subscribePush(this.messenger.token, {
        kind: "webpush",
        endpoint,
        keys: { p256dh: keys.p256dh, auth: keys.auth },
        label: browserLabel(),
        preview: this.preview,
      });
    } catch (err) {
      if (err instanceof ApiError && err.code === "unauthorized") throw err;
      if (fresh) await unsubscribeBrowser(); // not kept by the server: a dead end
      throw new PushFailure(`The server did not take the subscription: ${err.message}`, offline(err));
    }
    this.setId(made.id);
  }

  async deleteOnServer(id) {
    if (id === null) return;
    try {
      await api.unsubscribePush(this.messenger.token, id);
    } catch {
      // Gone already, or offline: the push service refuses pushes to the ended browser
      // subscription, and the server removes it at the first one (3.9, failures).
    }
  }

  setId(id) {
    this.id = id;
    this.save();
  }

  save() {
    const { me } = this.messenger;
    storage.setPush(me, this.id === null && !this.preview ? null : { id: this.id, preview: this.preview });
  }
}

// ---- the browser's side ---------------------------------------------------------------

/** The worker at /sw.js with scope /, once it is active (push needs an active one). */
async function registerWorker() {
  let registration;
  try {
    registration = await navigator.serviceWorker.register(WORKER_URL, { scope: "/" });
  } catch (err) {
    throw new PushFailure(`The app's service worker could not start (${err.message}).`);
  }
  if (registration.active) return registration;
  const worker = registration.installing || registration.waiting;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new PushFailure("The app's service worker did not start.")), ACTIVE_WAIT_MS);
    const check = () => {
      if (registration.active) {
        clearTimeout(timer);
        resolve();
      } else if (worker && worker.state === "redundant") {
        clearTimeout(timer);
        reject(new PushFailure("The app's service worker could not be installed."));
      }
    };
    if (worker) worker.addEventListener("statechange", check);
    check();
  });
  return registration;
}

async function vapidKey() {
  try {
    const { public_key: key } = await api.vapidKey();
    return base64urlBytes(key);
  } catch (err) {
    throw new PushFailure(`The server's push key could not be read (${err.message}).`, offline(err));
  }
}

/** The browser's subscription for the server's key: the one it has, or a new one. */
async function browserSubscription(registration, key) {
  const manager = registration.pushManager;
  let subscription = await manager.getSubscription();
  if (subscription && !sameBytes(subscription.options.applicationServerKey, key)) {
    await subscription.unsubscribe(); // made for another key: the server's changed
    subscription = null;
  }
  if (subscription) return subscription;
  try {
    return await manager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  } catch (err) {
    const why = err && err.message ? ` (${err.message})` : "";
    throw new PushFailure(
      `This browser could not subscribe to its push service${why}, so notifications cannot be ` +
        "turned on here. (Private windows cannot get pushes in some browsers.)",
    );
  }
}

async function unsubscribeBrowser() {
  try {
    const registration = await navigator.serviceWorker.getRegistration("/");
    const subscription = registration && (await registration.pushManager.getSubscription());
    if (subscription) await subscription.unsubscribe();
  } catch {
    // No worker or no subscription: nothing to end.
  }
}

/** The app's notifications go (the user logged out or turned them off). */
async function closeNotifications() {
  try {
    const registration = await navigator.serviceWorker.getRegistration("/");
    if (!registration) return;
    for (const notification of await registration.getNotifications()) notification.close();
  } catch {
    // Nothing shown, or no worker.
  }
}

function base64urlBytes(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function sameBytes(buffer, bytes) {
  if (!buffer) return false;
  const other = new Uint8Array(buffer);
  return other.length === bytes.length && other.every((b, i) => b === bytes[i]);
}

/** "Chrome on Linux": which browser it is, for the user's list of subscriptions. */
export function browserLabel() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /OPR\//.test(ua)
      ? "Opera"
      : /Firefox\//.test(ua)
        ? "Firefox"
        : /Chrom(e|ium)\//.test(ua)
          ? "Chrome"
          : /Safari\//.test(ua)
            ? "Safari"
            : "Browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Windows/.test(ua)
        ? "Windows"
        : /Mac OS X/.test(ua)
          ? "macOS"
          : /CrOS/.test(ua)
            ? "ChromeOS"
            : /Linux/.test(ua)
              ? "Linux"
              : "";
  return (os ? `${browser} on ${os}` : browser).slice(0, LABEL_MAX);
}
