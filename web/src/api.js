// The HTTP API, same origin: accounts, sessions, the conversation list, settings, push
// subscriptions, the export of one's data.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { body, token, file = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "offline", "The server cannot be reached.");
  }
  if (response.status === 204) return null;
  if (file && response.ok) return fileOf(response);
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: a proxy's error page, say.
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || "internal",
      error.message || `The server answered ${response.status}.`,
    );
  }
  return data;
}

/** A file answer: its bytes and the name its Content-Disposition gives (or null). */
async function fileOf(response) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const encoded = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i.exec(disposition);
  let name = null;
  try {
    if (encoded) name = decodeURIComponent(encoded[1].trim());
  } catch {
    // Not valid percent-encoding: the plain name, if any.
  }
  if (!name && plain) name = (plain[1] ?? plain[2]).trim();
  let blob;
  try {
    blob = await response.blob();
  } catch {
    throw new ApiError(0, "offline", "The download was cut off.");
  }
  return { blob, name: name || null };
}

export const api = {
  register: (username, password) =>
    request("POST", "/api/v1/users", { body: { username, password } }),
  login: (username, password) =>
    request("POST", "/api/v1/sessions", { body: { username, password } }),
  logout: (token) => request("DELETE", "/api/v1/sessions/current", { token }),
  conversations: (token) => request("GET", "/api/v1/conversations", { token }),
  settings: (token) => request("GET", "/api/v1/users/me/settings", { token }),
  saveSettings: (token, body) => request("PUT", "/api/v1/users/me/settings", { token, body }),
  changePassword: (token, current, next) =>
    request("PUT", "/api/v1/users/me/password", { token, body: { current, new: next } }),
  sessions: (token) => request("GET", "/api/v1/sessions", { token }),
  endSession: (token, id) => request("DELETE", `/api/v1/sessions/${encodeURIComponent(id)}`, { token }),
  deleteAccount: (token, password) => request("DELETE", "/api/v1/users/me", { token, body: { password } }),
  exportData: (token) => request("GET", "/api/v1/users/me/export", { token, file: true }),
  vapidKey: () => request("GET", "/api/v1/push/vapid"),
  subscribePush: (token, body) => request("POST", "/api/v1/push/subscriptions", { token, body }),
  unsubscribePush: (token, id) =>
    request("DELETE", `/api/v1/push/subscriptions/${encodeURIComponent(id)}`, { token }),
};
