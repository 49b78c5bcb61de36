// The views: login, the conversation list, one conversation. Rendering is plain DOM
// through `h` (text only, never HTML); the message list reuses one element per message
// (bubble.js) so ticks, edits and reactions change in place and the scroll position holds.
// Files: the composer's tray (tray.js), a bubble's files (attachments.js), the full-size
// image (viewer.js), all fetched with the token (media.js). The search box and its
// results (results.js), the account page (account.js).
import { AccountDialog } from "./account.js";
import { ApiError, api } from "./api.js";
import { drawFiles, releaseFiles } from "./attachments.js";
import { TOMBSTONE, createBubble, nameFor, setTick, tick, time, updateBubble } from "./bubble.js";
import { Messenger } from "./client.js";
import { h, replaceChildren } from "./dom.js";
import { REACTIONS, excerpt, filesLabel } from "./lifecycle.js";
import { Media } from "./media.js";
import { MessageMenu } from "./menu.js";
import { SearchBox } from "./results.js";
import { storage } from "./storage.js";
import { FileTray } from "./tray.js";
import { ImageViewer } from "./viewer.js";

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
    this.items = new Map(); // message key -> a bubble (bubble.js)
    this.renderQueued = false;
    this.menu = new MessageMenu();
    this.mode = null; // the composer's: null, {kind: "reply", id} or {kind: "edit", id}
    this.messenger = new Messenger(
      session,
      () => this.scheduleRender(),
      (reason) => this.end(reason),
    );
    this.media = new Media(this.messenger);
    this.viewer = new ImageViewer(this.media);
    this.tray = new FileTray(
      () => this.onFilesChosen(),
      (text) => this.messenger.changes.say(text),
    );
    this.searchBox = new SearchBox(this.messenger.search, session.username, (peer, id) => this.openAt(peer, id));
    this.account = new AccountDialog(this.messenger, (notice) => this.leave(notice));
    this.gapRows = new WeakMap(); // a gap of a thread (history.js) -> its row
    this.files = {
      media: this.media,
      viewer: this.viewer,
      progressOf: (key) => this.messenger.outgoing.progressOf(key),
    };
    this.build(session);
  }

  end(reason) {
    if (this.ended) return;
    this.ended = true;
    this.messenger.stop();
    this.detach();
    storage.setSession(null);
    showLogin(this.root, reason);
  }

  /** Log out, or the account was deleted: this browser forgets the user, then the login. */
  async leave(notice) {
    if (this.ended) return;
    this.ended = true;
    this.detach();
    await this.messenger.logout();
    storage.setSession(null);
    history.replaceState(null, "", location.pathname);
    showLogin(this.root, notice);
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
    logout.addEventListener("click", () => this.leave(""));
    const sidebar = h(
      "aside",
      { class: "sidebar" },
      h(
        "header",
        { class: "sidebar-head" },
        h("div", { class: "me" }, this.status, h("span", { class: "me-name", id: "me" }, session.username)),
        logout,
      ),
      this.searchBox.form,
      newChat,
      this.list,
      this.searchBox.panel,
      this.buildSettings(),
    );

    this.title = h("h2", { class: "thread-title", id: "thread-title" });
    this.removedMark = h("span", { class: "removed-mark", id: "thread-removed", hidden: true }, "(deleted account)");
    this.removedNote = h(
      "p",
      { class: "removed-note", id: "removed-note", hidden: true },
      "This account was deleted: you can read your conversation, but not write to it.",
    );
    const back = h("button", { class: "back", type: "button", "aria-label": "Back to conversations" }, "‹");
    back.addEventListener("click", () => {
      this.setMode(null);
      this.messenger.stoppedTyping();
      this.messenger.close();
      history.replaceState(null, "", location.pathname);
    });
    this.messages = h("ol", { class: "messages", id: "messages", "aria-live": "polite" });
    this.messages.addEventListener("scroll", () => {
      if (this.messages.scrollTop < 80 && this.messenger.openPeer) {
        this.messenger.loadOlder(this.messenger.openPeer);
      }
      this.fillVisibleGap();
    });
    this.messages.addEventListener("click", (event) => this.onMessageClick(event));
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
    this.sendButton = h("button", { type: "submit", class: "primary" }, "Send");
    this.composer = h(
      "form",
      { class: "composer", id: "composer" },
      this.tray.button,
      this.tray.input,
      this.body,
      this.sendButton,
    );
    this.body.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.composer.requestSubmit();
      } else if (event.key === "Escape" && this.mode) {
        event.preventDefault();
        this.setMode(null);
      }
    });
    this.body.addEventListener("input", () => {
      const peer = this.messenger.openPeer;
      if (peer && !this.isEditing()) this.messenger.typed(peer, this.body.value);
    });
    this.body.addEventListener("blur", () => this.messenger.stoppedTyping());
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.modeText = h("span", { class: "composer-mode-text" });
    const cancelMode = h(
      "button",
      { type: "button", class: "link", "aria-label": "Cancel", title: "Cancel (Escape)" },
      "✕",
    );
    cancelMode.addEventListener("click", () => this.setMode(null));
    this.modeBar = h("div", { class: "composer-mode", id: "composer-mode", hidden: true }, this.modeText, cancelMode);
    this.typingLine = h("p", { class: "typing", id: "typing", "aria-live": "polite", hidden: true });
    this.notice = h("p", { class: "notice", id: "notice", role: "alert", hidden: true });
    this.thread = h(
      "section",
      { class: "thread", "aria-labelledby": "thread-title" },
      h("header", { class: "thread-head" }, back, this.title, this.removedMark),
      this.threadError,
      this.messages,
      this.typingLine,
      this.notice,
      this.modeBar,
      this.tray.list,
      this.removedNote,
      this.composer,
    );
    this.stopDrops = this.tray.watchDrops(this.thread, () => !this.isEditing());
    this.empty = h(
      "section",
      { class: "empty" },
      h("p", {}, "Pick a conversation, or start one with a username."),
    );
    replaceChildren(
      this.root,
      h(
        "div",
        { class: "layout" },
        this.banner,
        sidebar,
        h("main", { class: "pane" }, this.thread, this.empty),
        this.viewer.el,
        this.account.el,
      ),
    );

    this.onHash = () => this.fromHash();
    window.addEventListener("hashchange", this.onHash);
    // A notification clicked while this page is open: the service worker says whose.
    this.onWorker = (event) => this.fromWorker(event.data);
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.addEventListener("message", this.onWorker);
      navigator.serviceWorker.startMessages();
    }
    this.fromHash();
  }

  /** The listeners on the window outlive this view: they go with it, and so do its images. */
  detach() {
    this.stopDrops();
    this.viewer.close();
    this.account.close();
    this.searchBox.stop();
    for (const item of this.items.values()) releaseFiles(item);
    this.items.clear();
    window.removeEventListener("hashchange", this.onHash);
    if ("serviceWorker" in navigator) navigator.serviceWorker.removeEventListener("message", this.onWorker);
  }

  fromWorker(data) {
    if (!data || data.type !== "open" || typeof data.peer !== "string") return;
    const peer = data.peer.trim().toLowerCase();
    if (peer && peer !== this.messenger.me) this.open(peer);
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
    if (peer !== this.messenger.openPeer) {
      this.setMode(null);
      this.tray.clear();
    }
    this.messenger.stoppedTyping();
    this.stickToBottom = true;
    location.hash = `#${encodeURIComponent(peer)}`;
    this.messenger.open(peer);
    this.body.focus();
  }

  /** A search result: its conversation, scrolled to the message (loaded first if old). */
  openAt(peer, id) {
    this.open(peer);
    this.messenger.jumpTo(peer, id);
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
    this.renderSettings();
    this.searchBox.render(m.openPeer);
    this.list.hidden = this.searchBox.open;
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
        h("span", { class: "peer" }, conv.with, conv.removed ? h("span", { class: "removed-mark" }, " (deleted account)") : null),
        last ? h("span", { class: "when" }, time(last.sent_at)) : null,
        preview(conv, last, mine, m.isTyping(conv.with)),
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
    this.renderRemoved(m.conversations.get(peer));
    this.threadError.textContent = thread.error || "";
    this.threadError.hidden = !thread.error;
    this.typingLine.hidden = !m.isTyping(peer);
    this.typingLine.textContent = m.isTyping(peer) ? `${peer} is typing…` : "";
    this.notice.hidden = !m.notice;
    this.notice.textContent = m.notice ? m.notice.text : "";
    this.renderMode();

    const list = this.messages;
    const scroller = list; // the list is its own scroll container
    const fromBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    const atBottom = fromBottom < 40 || this.stickToBottom;
    const firstBefore = list.querySelector(".message");
    const heightBefore = scroller.scrollHeight;
    const topBefore = scroller.scrollTop;

    const wanted = [];
    const gaps = new Map(thread.gaps.map((gap) => [gap.after, gap]));
    for (const id of thread.ids) {
      wanted.push(this.messageItem(m.messages.get(id)));
      if (gaps.has(id)) wanted.push(this.gapItem(gaps.get(id), thread.loading));
    }
    for (const item of m.outbox) if (item.to === peer) wanted.push(this.outboxItem(item));
    const seen = new Set(wanted.map((w) => w.key));
    for (const [key, item] of this.items) {
      if (seen.has(key)) continue;
      releaseFiles(item); // off the screen: its thumbnails' URLs go
      this.items.delete(key);
    }

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
    this.revealTarget(thread);
    if (thread.hasOlder && !thread.loading && scroller.scrollHeight <= scroller.clientHeight) {
      m.loadOlder(peer); // the screen is not full yet
    }
    this.fillVisibleGap();
  }

  /** A peer who deleted their account: marked, and the composer off. */
  renderRemoved(conv) {
    const removed = Boolean(conv && conv.removed);
    this.removedMark.hidden = !removed;
    this.removedNote.hidden = !removed;
    this.body.disabled = removed;
    this.sendButton.disabled = removed;
    this.tray.button.disabled = removed;
  }

  /** The message a search result named, once it is on screen: centred and flashed. */
  revealTarget(thread) {
    if (thread.target === null) return;
    const el = this.messages.querySelector(`.message[data-id="${thread.target}"]`);
    if (!el) return;
    thread.target = null;
    this.stickToBottom = false;
    el.scrollIntoView({ block: "center" });
    this.flash(el, 2500);
  }

  /** Messages not loaded between a search result's page and the rest: a row to load them. */
  gapItem(gap, loading) {
    let el = this.gapRows.get(gap);
    if (!el) {
      const button = h("button", { type: "button", class: "link" }, "Load newer messages");
      button.addEventListener("click", () => this.messenger.fillGap(this.messenger.openPeer, gap));
      el = h("li", { class: "gap-row" }, button);
      this.gapRows.set(gap, el);
    }
    el.firstChild.textContent = loading ? "Loading…" : "Load newer messages";
    return { key: gap, el };
  }

  /** A gap row in view loads its next page (one at a time; the render after checks again). */
  fillVisibleGap() {
    const m = this.messenger;
    const peer = m.openPeer;
    if (!peer) return;
    const thread = m.thread(peer);
    if (thread.loading || !thread.gaps.length) return;
    const view = this.messages.getBoundingClientRect();
    for (const gap of thread.gaps) {
      const row = this.gapRows.get(gap);
      if (!row || !row.isConnected) continue;
      const at = row.getBoundingClientRect();
      if (at.bottom >= view.top - 200 && at.top <= view.bottom + 200) {
        m.fillGap(peer, gap);
        return;
      }
    }
  }

  /** One element per message, kept across renders; its parts are updated in place. */
  element(key, mine) {
    let item = this.items.get(key);
    if (!item) {
      item = createBubble(mine);
      this.items.set(key, item);
    }
    return item;
  }

  messageItem(msg) {
    const mine = msg.from === this.messenger.me;
    // Our own messages are keyed by client_id, so the pending bubble becomes the stored one.
    const key = mine ? `c:${msg.client_id}` : `m:${msg.id}`;
    const item = this.element(key, mine);
    item.el.dataset.id = String(msg.id);
    item.el.dataset.clientId = msg.client_id;
    updateBubble(item, msg, this.messenger.me);
    drawFiles(item, msg, this.files);
    setTick(item, msg.status, mine, statusDetail(msg));
    return { key, el: item.el };
  }

  outboxItem(entry) {
    const key = `c:${entry.client_id}`;
    const item = this.element(key, true);
    item.el.dataset.clientId = entry.client_id;
    updateBubble(item, entry, this.messenger.me);
    drawFiles(item, entry, this.files);
    setTick(item, entry.state, true, entry.error ? `Not sent: ${entry.error}` : null);
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

  // ---- the message menu and what it starts --------------------------------------------

  /** Clicks inside the list: a ⋯ button, a reaction, a quote. */
  onMessageClick(event) {
    const button = event.target instanceof Element ? event.target.closest("button") : null;
    if (!button) return;
    // A quote works on a reply still in the outbox too (no id yet).
    if (button.classList.contains("quote")) return this.showOriginal(Number(button.dataset.replyTo));
    const bubble = button.closest(".message");
    const msg = bubble && this.messenger.messages.get(Number(bubble.dataset.id));
    if (!msg) return;
    if (button.classList.contains("menu-button")) this.toggleMenu(button, msg);
    else if (button.classList.contains("reaction")) this.toggleReaction(msg, button.dataset.emoji);
  }

  toggleMenu(button, msg) {
    if (this.menu.isOpenFor(button)) this.menu.close(true);
    else this.menu.open(button, this.menuEntries(msg), this.menuEmojis(msg));
  }

  /** What can be done to a message: its content only while it is not deleted. */
  menuEntries(msg) {
    const m = this.messenger;
    const own = msg.from === m.me && !msg.deleted;
    const mode = (kind) => () => this.setMode({ kind, id: msg.id });
    const entries = [];
    if (!msg.deleted) entries.push({ label: "Reply", action: "reply", run: mode("reply") });
    if (own) entries.push({ label: "Edit", action: "edit", run: mode("edit") });
    entries.push({ label: "Delete for me", action: "delete-me", danger: true, run: () => m.remove(msg.id, "me") });
    if (own) {
      const run = () => m.remove(msg.id, "everyone");
      entries.push({ label: "Delete for everyone", action: "delete-everyone", danger: true, run });
    }
    return entries;
  }

  menuEmojis(msg) {
    if (msg.deleted) return [];
    const m = this.messenger;
    return REACTIONS.map((emoji) => {
      const ours = (msg.reactions[emoji] || []).includes(m.me);
      return { emoji, mine: ours, run: () => (ours ? m.unreact(msg.id, emoji) : m.react(msg.id, emoji)) };
    });
  }

  /** A reaction under a message: ours is taken back, another one is joined. */
  toggleReaction(msg, emoji) {
    const users = msg.reactions[emoji] || [];
    if (users.includes(this.messenger.me)) this.messenger.unreact(msg.id, emoji);
    else this.messenger.react(msg.id, emoji);
  }

  showOriginal(id) {
    const el = this.messages.querySelector(`.message[data-id="${id}"]`);
    if (!el) return;
    el.scrollIntoView({ block: "center", behavior: "smooth" });
    this.flash(el, 1200);
  }

  flash(el, ms) {
    el.classList.add("flash");
    setTimeout(() => el.classList.remove("flash"), ms);
  }

  /** The composer writes a new message, a reply, or an edit of one of ours. */
  setMode(mode) {
    const wasEditing = this.isEditing();
    this.mode = mode;
    const msg = mode && this.messenger.messages.get(mode.id);
    if (mode && mode.kind === "edit" && msg) {
      this.body.value = msg.body;
      this.messenger.stoppedTyping();
    } else if (wasEditing) this.body.value = "";
    this.renderMode();
    if (mode) {
      this.body.focus();
      this.body.setSelectionRange(this.body.value.length, this.body.value.length);
    }
  }

  isEditing() {
    return Boolean(this.mode && this.mode.kind === "edit");
  }

  /** The bar above the composer; a mode whose message went away ends. */
  renderMode() {
    const msg = this.mode && this.messenger.messages.get(this.mode.id);
    if (this.mode && (!msg || msg.deleted || msg.hidden)) {
      if (this.isEditing()) this.body.value = "";
      this.mode = null;
    }
    this.modeBar.hidden = !this.mode;
    this.sendButton.textContent = this.isEditing() ? "Save" : "Send";
    // An edit changes the text only: the chosen files wait for the next message.
    this.tray.button.hidden = this.isEditing();
    this.tray.list.hidden = this.isEditing() || this.tray.files.length === 0;
    if (!this.mode) return;
    this.modeBar.dataset.kind = this.mode.kind;
    if (this.isEditing()) replaceChildren(this.modeText, h("strong", {}, "Editing message"));
    else {
      replaceChildren(
        this.modeText,
        h("strong", {}, `Replying to ${nameFor(msg.from, this.messenger.me)}`),
        " ",
        h("span", { class: "quote-text" }, excerpt(msg.body) || filesLabel(msg.attachments)),
      );
    }
  }

  /** With files chosen, the text may be empty (the message is its files). */
  onFilesChosen() {
    this.body.required = this.tray.files.length === 0;
    this.renderMode();
  }

  async submit() {
    const m = this.messenger;
    const text = this.body.value;
    if (!m.openPeer) return;
    if (this.isEditing()) {
      if (!text.trim()) return;
      // Edit mode stays until the server took it: a refused or offline edit keeps the text.
      const mode = this.mode;
      if ((await m.edit(mode.id, text)) && this.mode === mode) this.setMode(null);
      return;
    }
    if (!text.trim() && !this.tray.files.length) return;
    const original = this.mode ? m.messages.get(this.mode.id) : null;
    this.mode = null;
    this.body.value = "";
    this.stickToBottom = true;
    m.send(m.openPeer, text.trim() ? text : "", original, this.tray.take());
    this.renderMode();
  }

  // ---- settings ------------------------------------------------------------------------

  buildSettings() {
    this.receipts = h("input", { type: "checkbox", id: "read-receipts", name: "read_receipts", disabled: true });
    this.receipts.addEventListener("change", () => this.messenger.setReadReceipts(this.receipts.checked));
    this.settingsError = h("p", { class: "form-error", role: "alert" });
    // Notifications: the click itself turns them on, so the browser asks permission then.
    this.notifications = h("input", { type: "checkbox", id: "notifications", name: "notifications" });
    this.notifications.addEventListener("change", () =>
      this.messenger.setNotifications(this.notifications.checked),
    );
    this.notificationPreview = h("input", { type: "checkbox", id: "notification-preview", name: "preview" });
    this.notificationPreview.addEventListener("change", () =>
      this.messenger.setNotificationPreview(this.notificationPreview.checked),
    );
    this.notificationsHint = h("p", { class: "setting-hint" });
    this.notificationsError = h("p", { class: "form-error", id: "notifications-error", role: "alert" });
    return h(
      "details",
      { class: "settings", id: "settings" },
      h("summary", {}, "Settings"),
      h("label", { class: "setting" }, this.receipts, " Send read receipts"),
      h(
        "p",
        { class: "setting-hint" },
        "When off, people who write to you see ✓✓ delivered, never read. You still see their reads.",
      ),
      this.settingsError,
      h("label", { class: "setting" }, this.notifications, " Notifications"),
      h("label", { class: "setting" }, this.notificationPreview, " Show sender and text in notifications"),
      this.notificationsHint,
      this.notificationsError,
      this.accountButton(),
    );
  }

  accountButton() {
    const button = h("button", { type: "button", class: "account-open", id: "account-open" }, "Account and sessions…");
    button.addEventListener("click", () => this.account.open());
    return button;
  }

  renderSettings() {
    const { settings, settingsError, push } = this.messenger;
    this.receipts.disabled = !settings || Boolean(settings.saving);
    if (settings) this.receipts.checked = settings.read_receipts !== false;
    this.settingsError.textContent = settingsError || "";

    this.notifications.disabled = !push.supported || push.busy;
    this.notificationPreview.disabled = !push.supported || push.busy;
    this.notifications.setAttribute("aria-busy", String(push.busy));
    if (!push.busy) this.notifications.checked = push.on; // while busy: as clicked
    this.notificationPreview.checked = push.preview;
    this.notificationsHint.textContent = !push.supported
      ? "This browser cannot show notifications from this site."
      : push.preview
        ? "Shown while no page of the app is connected. The push service carries who wrote and the start of the text."
        : "Shown while no page of the app is connected. They say only how many messages are unread: the push service never learns who wrote or what.";
    this.notificationsError.textContent = push.error || "";
    this.notificationsError.hidden = !push.error;
  }
}

/** The second line of a conversation in the list. */
function preview(conv, last, mine, typing) {
  if (typing) return h("span", { class: "preview typing-preview" }, "typing…");
  if (!last) return h("span", { class: "preview" }, "No messages yet");
  const text = last.deleted ? h("em", {}, TOMBSTONE) : last.body || filesLabel(last.attachments);
  return h("span", { class: "preview" }, mine ? tick(last.status) : null, mine ? "You: " : "", text);
}

function statusDetail(msg) {
  if (msg.status === "read" && msg.read_at) return `Read ${new Date(msg.read_at).toLocaleString()}`;
  if (msg.status !== "sent" && msg.delivered_at) {
    return `Delivered ${new Date(msg.delivered_at).toLocaleString()}`;
  }
  return null;
}
