// The views: login, the conversation list, one conversation. Rendering is plain DOM
// through `h` (text only, never HTML); the message list reuses one element per message
// so ticks change in place and the scroll position holds.
import { ApiError, api } from "./api.js";
import { Messenger } from "./client.js";
import { h, replaceChildren } from "./dom.js";
import { storage } from "./storage.js";

const TICKS = {
  pending: ["◷", "Waiting to be sent"],
  failed: ["!", "Not sent"],
  sent: ["✓", "Stored on the server"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

function time(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function tick(status, detail) {
  const [mark, title] = TICKS[status];
  return h("span", { class: `tick tick-${status}`, title: detail || title, "aria-label": title }, mark);
}

// ---- login ------------------------------------------------------------------------

export function showLogin(root, notice = "") {
  document.title = "Messenger";
  document.body.className = "on-login";
  const error = h("p", { class: "form-error", role: "alert" }, notice);
  const username = h("input", {
    name: "username",
    autocomplete: "username",
    required: true,
    minLength: 3,
    maxLength: 64,
    autocapitalize: "none",
    spellcheck: false,
  });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    minLength: 8,
    maxLength: 256,
  });
  const buttons = [
    h("button", { type: "submit", name: "action", value: "login", class: "primary" }, "Log in"),
    h("button", { type: "submit", name: "action", value: "register" }, "Create account"),
  ];
  const form = h(
    "form",
    { class: "login-form", id: "login-form" },
    h("h1", {}, "Messenger"),
    h("p", { class: "lead" }, "Private messages, kept until they are delivered."),
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    error,
    h("div", { class: "actions" }, buttons),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const register = event.submitter && event.submitter.value === "register";
    buttons.forEach((b) => (b.disabled = true));
    error.textContent = "";
    const name = username.value.trim().toLowerCase();
    try {
      if (register) await api.register(name, password.value);
      const session = await api.login(name, password.value);
      const saved = { token: session.token, username: session.user.username, expires_at: session.expires_at };
      storage.setSession(saved);
      showApp(root, saved);
    } catch (err) {
      error.textContent = loginError(err, register);
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  replaceChildren(root, h("main", { class: "login" }, form));
  username.focus();
}

function loginError(err, register) {
  if (!(err instanceof ApiError)) return "Something went wrong.";
  if (err.code === "username_taken") return "That username is taken.";
  if (err.code === "bad_credentials") return "Wrong username or password.";
  if (err.code === "rate_limited") return "Too many attempts. Wait a little and try again.";
  if (err.code === "invalid" && register) {
    return `${err.message} (usernames: 3-64 of a-z 0-9 . _ % + @ -; passwords: 8-256 characters)`;
  }
  return err.message;
}

// ---- the app ------------------------------------------------------------------------

export function showApp(root, session) {
  const view = new AppView(root, session);
  view.messenger.start();
}

class AppView {
  constructor(root, session) {
    this.root = root;
    this.items = new Map(); // message key -> {el, status}
    this.renderQueued = false;
    this.messenger = new Messenger(
      session,
      () => this.scheduleRender(),
      (reason) => this.end(reason),
    );
    this.build(session);
  }

  end(reason) {
    if (this.ended) return;
    this.ended = true;
    this.messenger.stop();
    window.removeEventListener("hashchange", this.onHash);
    storage.setSession(null);
    showLogin(this.root, reason);
  }

  build(session) {
    document.body.className = "on-app";
    this.banner = h("div", { id: "banner", class: "banner", role: "status", hidden: true });
    this.status = h("span", { class: "connection", title: "" });
    this.list = h("ul", { class: "conversations", id: "conversations", "aria-label": "Conversations" });
    this.peerInput = h("input", {
      name: "peer",
      placeholder: "Username to message",
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: false,
      required: true,
      "aria-label": "Username to message",
    });
    const newChat = h(
      "form",
      { class: "new-chat", id: "new-chat" },
      this.peerInput,
      h("button", { type: "submit" }, "Chat"),
    );
    newChat.addEventListener("submit", (event) => {
      event.preventDefault();
      const peer = this.peerInput.value.trim().toLowerCase();
      if (!peer) return;
      if (peer === this.messenger.me) {
        this.peerInput.setCustomValidity("That is you: name someone else.");
        this.peerInput.reportValidity();
        return;
      }
      this.peerInput.value = "";
      this.open(peer);
    });
    this.peerInput.addEventListener("input", () => this.peerInput.setCustomValidity(""));

    const logout = h("button", { class: "link", type: "button", id: "logout" }, "Log out");
    logout.addEventListener("click", async () => {
      window.removeEventListener("hashchange", this.onHash);
      await this.messenger.logout();
      storage.setSession(null);
      history.replaceState(null, "", location.pathname);
      showLogin(this.root);
    });
    const sidebar = h(
      "aside",
      { class: "sidebar" },
      h(
        "header",
        { class: "sidebar-head" },
        h("div", { class: "me" }, this.status, h("span", { class: "me-name", id: "me" }, session.username)),
        logout,
      ),
      newChat,
      this.list,
    );

    this.title = h("h2", { class: "thread-title", id: "thread-title" });
    const back = h("button", { class: "back", type: "button", "aria-label": "Back to conversations" }, "‹");
    back.addEventListener("click", () => {
      this.messenger.close();
      history.replaceState(null, "", location.pathname);
    });
    this.messages = h("ol", { class: "messages", id: "messages", "aria-live": "polite" });
    this.messages.addEventListener("scroll", () => {
      if (this.messages.scrollTop < 80 && this.messenger.openPeer) {
        this.messenger.loadOlder(this.messenger.openPeer);
      }
    });
    this.older = h("button", { type: "button", class: "older", id: "older" }, "Load older messages");
    this.older.addEventListener("click", () => this.messenger.loadOlder(this.messenger.openPeer));
    this.threadError = h("p", { class: "thread-error", role: "alert" });
    this.body = h("textarea", {
      name: "body",
      rows: 1,
      placeholder: "Write a message",
      "aria-label": "Message",
      required: true,
    });
    this.composer = h(
      "form",
      { class: "composer", id: "composer" },
      this.body,
      h("button", { type: "submit", class: "primary" }, "Send"),
    );
    this.body.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.composer.requestSubmit();
      }
    });
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.body.value;
      if (!text.trim() || !this.messenger.openPeer) return;
      this.body.value = "";
      this.stickToBottom = true;
      this.messenger.send(this.messenger.openPeer, text);
    });
    this.thread = h(
      "section",
      { class: "thread", "aria-labelledby": "thread-title" },
      h("header", { class: "thread-head" }, back, this.title),
      this.threadError,
      this.messages,
      this.composer,
    );
    this.empty = h(
      "section",
      { class: "empty" },
      h("p", {}, "Pick a conversation, or start one with a username."),
    );
    replaceChildren(
      this.root,
      h("div", { class: "layout" }, this.banner, sidebar, h("main", { class: "pane" }, this.thread, this.empty)),
    );

    this.onHash = () => this.fromHash();
    window.addEventListener("hashchange", this.onHash);
    this.fromHash();
  }

  /** `#bob@example.com` opens that conversation (so a reload keeps it open). */
  fromHash() {
    let peer = "";
    try {
      peer = decodeURIComponent(location.hash.replace(/^#\/?/, "")).trim().toLowerCase();
    } catch {
      return; // not valid percent-encoding: ignore it
    }
    if (peer && peer !== this.messenger.openPeer) this.messenger.open(peer);
  }

  open(peer) {
    this.stickToBottom = true;
    location.hash = `#${encodeURIComponent(peer)}`;
    this.messenger.open(peer);
    this.body.focus();
  }

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    const m = this.messenger;
    const unread = m.unreadTotal();
    document.title = unread ? `(${unread}) Messenger` : "Messenger";
    document.body.classList.toggle("thread-open", Boolean(m.openPeer));
    this.renderBanner();
    this.renderConversations();
    this.thread.hidden = !m.openPeer;
    this.empty.hidden = Boolean(m.openPeer);
    if (m.openPeer) this.renderThread();
  }

  renderBanner() {
    const m = this.messenger;
    const pending = m.pendingCount();
    const waiting = pending ? ` ${pending} message${pending > 1 ? "s" : ""} waiting to be sent.` : "";
    this.status.className = `connection ${m.connected ? "up" : "down"}`;
    this.status.title = m.connected ? "Connected" : "Not connected";
    if (m.connected) {
      this.banner.hidden = true;
      document.body.classList.remove("offline");
      return;
    }
    document.body.classList.add("offline");
    this.banner.hidden = false;
    this.banner.textContent = m.online
      ? `Connecting to the server…${waiting}`
      : `You are offline. Messages you write are kept and sent when you are back.${waiting}`;
  }

  renderConversations() {
    const m = this.messenger;
    const convs = [...m.conversations.values()].sort(
      (a, b) => (b.last_message ? b.last_message.id : Infinity) - (a.last_message ? a.last_message.id : Infinity),
    );
    const rows = convs.map((conv) => {
      const last = conv.last_message;
      const mine = last && last.from === m.me;
      const button = h(
        "button",
        {
          type: "button",
          class: "conversation",
          dataset: { peer: conv.with },
          "aria-current": conv.with === m.openPeer ? "true" : null,
        },
        h("span", { class: "peer" }, conv.with),
        last ? h("span", { class: "when" }, time(last.sent_at)) : null,
        h(
          "span",
          { class: "preview" },
          mine ? tick(last.status) : null,
          last ? (mine ? "You: " : "") + last.body : "No messages yet",
        ),
        conv.unread > 0
          ? h("span", { class: "unread", "aria-label": `${conv.unread} unread` }, String(conv.unread))
          : null,
      );
      button.addEventListener("click", () => this.open(conv.with));
      return h("li", {}, button);
    });
    if (!rows.length) rows.push(h("li", { class: "hint" }, "No conversations yet."));
    replaceChildren(this.list, rows);
  }

  renderThread() {
    const m = this.messenger;
    const peer = m.openPeer;
    const thread = m.thread(peer);
    this.title.textContent = peer;
    this.threadError.textContent = thread.error || "";
    this.threadError.hidden = !thread.error;

    const list = this.messages;
    const scroller = list; // the list is its own scroll container
    const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    const atBottom = fromBottom < 40 || this.stickToBottom;
    const firstBefore = list.querySelector(".message");
    const heightBefore = scroller.scrollHeight;
    const topBefore = scroller.scrollTop;

    const wanted = [];
    for (const id of thread.ids) wanted.push(this.messageItem(m.messages.get(id)));
    for (const item of m.outbox) if (item.to === peer) wanted.push(this.outboxItem(item));
    const seen = new Set(wanted.map((w) => w.key));
    for (const key of this.items.keys()) if (!seen.has(key)) this.items.delete(key);

    this.older.hidden = !thread.hasOlder;
    this.older.textContent = thread.loading && thread.hasOlder ? "Loading…" : "Load older messages";
    const children = [h("li", { class: "older-row" }, this.older), ...wanted.map((w) => w.el)];
    if (thread.loaded && !thread.ids.length && !wanted.length) {
      children.push(h("li", { class: "hint" }, "No messages yet. Say hello!"));
    }
    // Moves only what changed place, so the browser keeps selection and layout.
    let at = 0;
    for (const child of children) {
      if (list.children[at] !== child) list.insertBefore(child, list.children[at] || null);
      at += 1;
    }
    while (list.children.length > children.length) list.lastElementChild.remove();

    if (atBottom) {
      scroller.scrollTop = scroller.scrollHeight;
      this.stickToBottom = false;
    } else if (firstBefore && list.querySelector(".message") !== firstBefore) {
      // Older messages came in above: keep the same messages in view.
      scroller.scrollTop = topBefore + (scroller.scrollHeight - heightBefore);
    }
    if (thread.hasOlder && !thread.loading && scroller.scrollHeight <= scroller.clientHeight) {
      m.loadOlder(peer); // the screen is not full yet
    }
  }

  /** One element per message, kept across renders; its tick is updated in place. */
  element(key, build) {
    let item = this.items.get(key);
    if (!item) {
      item = { el: build(), status: null };
      this.items.set(key, item);
    }
    return item;
  }

  messageItem(msg) {
    const mine = msg.from === this.messenger.me;
    // Our own messages are keyed by client_id, so the pending bubble becomes the stored one.
    const key = mine ? `c:${msg.client_id}` : `m:${msg.id}`;
    const item = this.element(key, () => this.bubble(mine, msg.body, msg.sent_at));
    item.el.dataset.id = String(msg.id);
    item.el.dataset.clientId = msg.client_id;
    this.setStatus(item, msg.status, mine, statusDetail(msg));
    return { key, el: item.el };
  }

  outboxItem(entry) {
    const key = `c:${entry.client_id}`;
    const item = this.element(key, () => this.bubble(true, entry.body, entry.queued_at));
    item.el.dataset.clientId = entry.client_id;
    this.setStatus(item, entry.state, true, entry.error ? `Not sent: ${entry.error}` : null);
    if (entry.state === "failed" && !item.actions) {
      const retry = h("button", { type: "button", class: "link" }, "Retry");
      const discard = h("button", { type: "button", class: "link" }, "Discard");
      retry.addEventListener("click", () => this.messenger.retry(entry.client_id));
      discard.addEventListener("click", () => this.messenger.discard(entry.client_id));
      item.actions = h("div", { class: "failed-actions" }, h("span", {}, entry.error || "Not sent."), retry, discard);
      item.el.append(item.actions);
    } else if (entry.state !== "failed" && item.actions) {
      item.actions.remove();
      item.actions = null;
    }
    return { key, el: item.el };
  }

  bubble(mine, body, at) {
    const meta = h("div", { class: "meta" }, h("time", { datetime: at }, time(at)));
    return h(
      "li",
      { class: `message ${mine ? "mine" : "theirs"}` },
      h("div", { class: "body" }, body),
      meta,
    );
  }

  setStatus(item, status, mine, detail) {
    if (item.status === status && item.detail === detail) return;
    item.status = status;
    item.detail = detail;
    item.el.dataset.status = status;
    if (!mine) return;
    const meta = item.el.querySelector(".meta");
    const old = meta.querySelector(".tick");
    const fresh = tick(status, detail);
    if (old) old.replaceWith(fresh);
    else meta.append(fresh);
  }
}

function statusDetail(msg) {
  if (msg.status === "read" && msg.read_at) return `Read ${new Date(msg.read_at).toLocaleString()}`;
  if (msg.status !== "sent" && msg.delivered_at) {
    return `Delivered ${new Date(msg.delivered_at).toLocaleString()}`;
  }
  return null;
}
