// The service worker (served at /sw.js, scope /): it shows the pushes of
// docs/protocol.md 3.9 while no page of the app is connected, and brings a page up when
// one is clicked. It has no fetch handler: it never stands between the page and the
// network. Notification text is given to the browser as plain strings; nothing here
// builds markup, and the sender's name reaches a URL only percent-encoded.
//
// A push is {cursor, unread} and, with previews on, {from, excerpt}. `unread: 0` means
// everything was read elsewhere: the app's notifications go. Otherwise one notification,
// replaced by the next (one tag), says how many are unread or who wrote what.

const TAG = "messenger-unread";
const TITLE = "Messenger";
const TEXT_MAX = 200;
const NAME_MAX = 256;

self.addEventListener("install", () => {
  // Nothing to cache: take over at once, so a new version shows the next push.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("push", (event) => {
  event.waitUntil(onPush(readPayload(event.data)));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  event.waitUntil(openApp(typeof data.from === "string" ? data.from : null));
});

/** The push's JSON, or `{}` when it has none or it is not JSON (an empty wake-up). */
function readPayload(data) {
  if (!data) return {};
  try {
    const value = data.json();
    return value && typeof value === "object" && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** Plain text of at most `max` characters, control characters out; "" if not a string. */
function plain(value, max) {
  if (typeof value !== "string") return "";
  // eslint-disable-next-line no-control-regex
  const text = value.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function describe(payload) {
  const unread = Number.isSafeInteger(payload.unread) && payload.unread >= 0 ? payload.unread : null;
  const from = plain(payload.from, NAME_MAX);
  const excerpt = plain(payload.excerpt, TEXT_MAX);
  const cursor = Number.isSafeInteger(payload.cursor) ? payload.cursor : null;
  const count =
    unread === null
      ? "New messages"
      : `${unread} unread message${unread === 1 ? "" : "s"}`;
  if (from && excerpt) {
    const more = unread !== null && unread > 1 ? ` (${count})` : "";
    return { title: `${from}${more}`, body: excerpt, from, unread, cursor };
  }
  return { title: TITLE, body: count, from: from || null, unread, cursor };
}

async function onPush(payload) {
  if (payload.unread === 0) {
    await closeAll();
    return;
  }
  const shown = describe(payload);
  await self.registration.showNotification(shown.title, {
    body: shown.body,
    tag: TAG,
    renotify: true, // the next push replaces this one, and still tells
    data: { from: shown.from, unread: shown.unread, cursor: shown.cursor },
  });
}

async function closeAll() {
  const open = await self.registration.getNotifications();
  for (const notification of open) notification.close();
}

/**
 * Focus a page of the app (the one in front if several) and open the conversation
 * with `from`; open a page if there is none. The page opens it from its URL hash.
 */
async function openApp(from) {
  const hash = from ? `#${encodeURIComponent(from)}` : "";
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const ours = windows.filter((client) => new URL(client.url).origin === self.location.origin);
  const best = ours.find((client) => client.focused) || ours.find((c) => c.visibilityState === "visible") || ours[0];
  if (best) {
    if (from) best.postMessage({ type: "open", peer: from });
    try {
      await best.focus();
    } catch {
      // Not allowed (no click to go with it): the page still opened the conversation.
    }
    return;
  }
  await self.clients.openWindow(`/${hash}`);
}
