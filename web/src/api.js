// The HTTP API, same origin: accounts, sessions, the conversation list, settings, push
// subscriptions.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { body, token } = {}) {
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

export const api = {
  register: (username, password) =>
    request("POST", "/api/v1/users", { body: { username, password } }),
  login: (username, password) =>
    request("POST", "/api/v1/sessions", { body: { username, password } }),
  logout: (token) => request("DELETE", "/api/v1/sessions/current", { token }),
  conversations: (token) => request("GET", "/api/v1/conversations", { token }),
  settings: (token) => request("GET", "/api/v1/users/me/settings", { token }),
  saveSettings: (token, body) => request("PUT", "/api/v1/users/me/settings", { token, body }),
  vapidKey: () => request("GET", "/api/v1/push/vapid"),
  subscribePush: (token, body) => request("POST", "/api/v1/push/subscriptions", { token, body }),
  unsubscribePush: (token, id) =>
    request("DELETE", `/api/v1/push/subscriptions/${encodeURIComponent(id)}`, { token }),
};
