// What survives a reload, in localStorage: the session, and per user the stream
// cursor to resume from, the outbox of messages not yet acknowledged, and whether this
// browser shows notifications (the server's subscription id, the preview choice).

const PREFIX = "messenger:";

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value === null || value === undefined) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the client still works, it just forgets on reload.
  }
}

export const storage = {
  session: () => read("session", null),
  setSession: (session) => write("session", session),
  cursor: (user) => {
    const value = read(`${user}:cursor`, null);
    return Number.isSafeInteger(value) && value >= 0 ? value : null;
  },
  setCursor: (user, cursor) => write(`${user}:cursor`, cursor),
  outbox: (user) => {
    const value = read(`${user}:outbox`, []);
    return Array.isArray(value) ? value : [];
  },
  setOutbox: (user, items) => write(`${user}:outbox`, items.length ? items : null),
  push: (user) => {
    const value = read(`${user}:push`, null);
    if (!value || typeof value !== "object") return { id: null, preview: false };
    return { id: Number.isSafeInteger(value.id) ? value.id : null, preview: value.preview === true };
  },
  setPush: (user, value) => write(`${user}:push`, value),
  forget: (user) => {
    write(`${user}:cursor`, null);
    write(`${user}:outbox`, null);
    write(`${user}:push`, null);
  },
};
