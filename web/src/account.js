// The account page (a modal <dialog> opened from Settings), over HTTP with the session's
// token: changing the password (the server ends every other session), the sessions
// with a button to end any other one, "Download my data" (the export, saved through
// an object URL), and deleting the account. Text from the server (user agents,
// addresses) is shown as text (dom.js).
import { ApiError, api } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { saveAs } from "./media.js";

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 256;

function stamp(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "unknown" : date.toLocaleString();
}

function password(name, autocomplete, label) {
  return h("input", {
    type: "password",
    name,
    autocomplete,
    required: true,
    minLength: name === "current" || name === "password" ? 1 : PASSWORD_MIN,
    maxLength: PASSWORD_MAX,
    "aria-label": label,
  });
}

export class AccountDialog {
  /**
   * @param {import("./client.js").Messenger} messenger
   * @param {(notice: string) => void} onDeleted the account is gone: back to the login
   */
  constructor(messenger, onDeleted) {
    this.messenger = messenger;
    this.onDeleted = onDeleted;
    const close = h("button", { type: "button", class: "dialog-close", "aria-label": "Close", title: "Close (Escape)" }, "✕");
    close.addEventListener("click", () => this.close());
    this.el = h(
      "dialog",
      { class: "account", id: "account", "aria-labelledby": "account-title" },
      h("header", { class: "dialog-head" }, h("h2", { id: "account-title" }, "Account"), close),
      h("div", { class: "dialog-body" }, this.passwordSection(), this.sessionsSection(), this.dataSection(), this.deleteSection()),
    );
  }

  open() {
    for (const form of this.el.querySelectorAll("form")) form.reset();
    for (const p of this.el.querySelectorAll(".form-error, .form-done")) p.textContent = "";
    this.exportStatus.textContent = "";
    if (!this.el.open) this.el.showModal();
    this.loadSessions();
  }

  close() {
    if (this.el.open) this.el.close();
  }

  /** What a refused request says; a dead token ends the app's session instead. */
  failed(err, texts = {}) {
    if (err instanceof ApiError && err.code === "unauthorized") {
      this.close();
      this.messenger.sessionEnded();
      return "";
    }
    if (err instanceof ApiError && texts[err.code]) return texts[err.code];
    if (err instanceof ApiError && err.code === "offline") return "The server cannot be reached: try again when you are online.";
    return err instanceof ApiError ? err.message : "That did not work.";
  }

  // ---- the password ---------------------------------------------------------------

  passwordSection() {
    const current = password("current", "current-password", "Current password");
    const fresh = password("new", "new-password", "New password");
    const repeat = password("repeat", "new-password", "Repeat the new password");
    const error = h("p", { class: "form-error", id: "password-error", role: "alert" });
    const done = h("p", { class: "form-done", id: "password-done", role: "status" });
    const submit = h("button", { type: "submit", class: "primary" }, "Change password");
    const form = h(
      "form",
      { class: "account-form", id: "password-form" },
      h("label", {}, "Current password", current),
      h("label", {}, `New password (${PASSWORD_MIN}-${PASSWORD_MAX} characters)`, fresh),
      h("label", {}, "Repeat the new password", repeat),
      error,
      done,
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      done.textContent = "";
      if (fresh.value !== repeat.value) {
        error.textContent = "The new passwords differ: type the same one twice.";
        return;
      }
      submit.disabled = true;
      try {
        await api.changePassword(this.messenger.token, current.value, fresh.value);
        form.reset();
        done.textContent = "Password changed. Your other sessions were logged out.";
        this.loadSessions();
      } catch (err) {
        error.textContent = this.failed(err, {
          bad_credentials: "The current password is wrong.",
          invalid: `The new password is not allowed (${PASSWORD_MIN} to ${PASSWORD_MAX} characters).`,
          rate_limited: "Too many attempts. Wait a little and try again.",
        });
      }
      submit.disabled = false;
    });
    return h("section", { class: "account-part" }, h("h3", {}, "Password"), form);
  }

  // ---- sessions -----------------------------------------------------------------------

  sessionsSection() {
    this.sessionList = h("ul", { class: "sessions", id: "sessions", "aria-label": "Sessions" });
    this.sessionsError = h("p", { class: "form-error", id: "sessions-error", role: "alert" });
    this.sessionList.addEventListener("click", (event) => {
      const button = event.target instanceof Element ? event.target.closest("button[data-action=end]") : null;
      if (button) this.endSession(Number(button.dataset.session), button);
    });
    return h(
      "section",
      { class: "account-part" },
      h("h3", {}, "Sessions"),
      h("p", { class: "setting-hint" }, "Where your account is logged in. Ending a session logs that device out."),
      this.sessionList,
      this.sessionsError,
    );
  }

  async loadSessions() {
    this.sessionsError.textContent = "";
    try {
      const data = await api.sessions(this.messenger.token);
      const sessions = data && Array.isArray(data.sessions) ? data.sessions : [];
      replaceChildren(this.sessionList, sessions.map((s) => this.sessionRow(s)));
    } catch (err) {
      this.sessionsError.textContent = this.failed(err);
    }
  }

  sessionRow(s) {
    const details = [
      h("span", { class: "session-agent" }, typeof s.user_agent === "string" && s.user_agent ? s.user_agent : "Unknown browser"),
      h("span", { class: "session-address" }, typeof s.address === "string" && s.address ? s.address : "Unknown address"),
      h("span", { class: "session-created" }, `Logged in ${stamp(s.created_at)}`),
      h("span", { class: "session-used" }, `Last used ${stamp(s.last_used_at)}`),
    ];
    const end = s.current
      ? h("span", { class: "session-current" }, "This device")
      : h("button", { type: "button", class: "danger", dataset: { action: "end", session: s.id } }, "End session");
    return h(
      "li",
      { class: s.current ? "session current" : "session", dataset: { session: s.id } },
      h("div", { class: "session-details" }, details),
      end,
    );
  }

  async endSession(id, button) {
    button.disabled = true;
    this.sessionsError.textContent = "";
    try {
      await api.endSession(this.messenger.token, id);
    } catch (err) {
      // Already ended (404): the list below no longer has it.
      if (!(err instanceof ApiError && err.code === "not_found")) this.sessionsError.textContent = this.failed(err);
    }
    await this.loadSessions();
  }

  // ---- the export -------------------------------------------------------------------

  dataSection() {
    this.exportStatus = h("p", { class: "setting-hint", id: "export-status", role: "status" });
    const button = h("button", { type: "button", id: "export" }, "Download my data");
    button.addEventListener("click", async () => {
      button.disabled = true;
      this.exportStatus.textContent = "Preparing your data…";
      try {
        const { blob, name } = await api.exportData(this.messenger.token);
        saveAs(blob, name || `messenger-${this.messenger.me}.json`);
        this.exportStatus.textContent = "Downloaded.";
      } catch (err) {
        this.exportStatus.textContent = this.failed(err);
      }
      button.disabled = false;
    });
    return h(
      "section",
      { class: "account-part" },
      h("h3", {}, "Your data"),
      h("p", { class: "setting-hint" }, "Your account, sessions, files and messages, as one JSON file."),
      button,
      this.exportStatus,
    );
  }

  // ---- deleting the account ------------------------------------------------------------

  deleteSection() {
    const secret = password("password", "current-password", "Password");
    const sure = h("input", { type: "checkbox", name: "confirm", required: true });
    const error = h("p", { class: "form-error", id: "delete-error", role: "alert" });
    const submit = h("button", { type: "submit", class: "danger" }, "Delete my account");
    const form = h(
      "form",
      { class: "account-form", id: "delete-form" },
      h("label", {}, "Password", secret),
      h(
        "label",
        { class: "setting" },
        sure,
        " I understand: my account and my sessions end for good, and its name cannot be used again. The people I wrote to keep our conversations.",
      ),
      error,
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!sure.checked) return;
      error.textContent = "";
      submit.disabled = true;
      try {
        await api.deleteAccount(this.messenger.token, secret.value);
        this.close();
        this.onDeleted("Your account was deleted.");
        return;
      } catch (err) {
        error.textContent = this.failed(err, {
          bad_credentials: "Wrong password: the account was not deleted.",
          rate_limited: "Too many attempts. Wait a little and try again.",
        });
      }
      submit.disabled = false;
    });
    return h("section", { class: "account-part danger-zone" }, h("h3", {}, "Delete account"), form);
  }
}
