// The search box and its results (search.js holds the state): a query runs on Enter or
// after a short pause in typing; results take the conversation list's place until the
// box is cleared. While a conversation is open, "Only this conversation" (a checkbox,
// off by default) limits the search to it. A snippet is shown as text: its hits become
// <mark> elements whose text is set as text (dom.js), so a message's markup is never parsed.
import { h, replaceChildren } from "./dom.js";
import { snippetParts } from "./search.js";

const DEBOUNCE_MS = 400;

/** A result's time: the hour today, the day otherwise. */
function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

/** The snippet's text, each hit in a <mark>. */
export function drawSnippet(snippet) {
  return snippetParts(snippet).map((part) => (part.hit ? h("mark", {}, part.text) : part.text));
}

export class SearchBox {
  /**
   * @param {import("./search.js").Search} search
   * @param {string} me the user, to name the other party of each result
   * @param {(peer: string, id: number) => void} onPick a result was chosen
   */
  constructor(search, me, onPick) {
    this.search = search;
    this.me = me;
    this.onPick = onPick;
    this.timer = null;
    this.shown = null; // what the list shows: redrawn only when the results change
    this.peer = null; // the open conversation, which the checkbox can limit the search to
    this.input = h("input", {
      type: "search",
      name: "query",
      id: "search-input",
      placeholder: "Search messages",
      "aria-label": "Search messages",
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: false,
      enterKeyHint: "search",
    });
    this.only = h("input", { type: "checkbox", id: "search-only", name: "only" });
    this.only.addEventListener("change", () => {
      if (this.input.value.trim()) this.runNow();
    });
    this.scope = h("label", { class: "search-scope", id: "search-scope", hidden: true }, this.only, " Only this conversation");
    this.form = h("form", { class: "search", id: "search", role: "search" }, this.input, this.scope);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.runNow();
    });
    this.input.addEventListener("input", () => this.typed());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.input.value) {
        event.preventDefault();
        this.input.value = "";
        this.runNow();
      }
    });
    this.status = h("p", { class: "search-status", id: "search-status", role: "status" });
    this.error = h("p", { class: "form-error search-error", id: "search-error", role: "alert", hidden: true });
    this.list = h("ol", { class: "search-list", id: "search-list", "aria-label": "Messages found" });
    this.more = h("button", { type: "button", class: "search-more", id: "search-more", hidden: true }, "More");
    this.more.addEventListener("click", () => this.search.more());
    this.list.addEventListener("click", (event) => {
      const button = event.target instanceof Element ? event.target.closest("button.search-result") : null;
      if (button) this.onPick(button.dataset.peer, Number(button.dataset.id));
    });
    this.panel = h(
      "section",
      { class: "search-results", id: "search-results", "aria-label": "Search results", hidden: true },
      this.status,
      this.error,
      this.list,
      this.more,
    );
  }

  /** A pause in typing runs the query; clearing the box ends the search at once. */
  typed() {
    clearTimeout(this.timer);
    if (!this.input.value.trim()) {
      this.runNow();
      return;
    }
    this.timer = setTimeout(() => {
      if (this.input.value !== this.search.query || this.within() !== this.search.within) this.runNow();
    }, DEBOUNCE_MS);
  }

  runNow() {
    clearTimeout(this.timer);
    this.search.run(this.input.value, this.within());
  }

  /** The conversation the search is limited to: the open one when the box is ticked. */
  within() {
    return this.only.checked && this.peer ? this.peer : null;
  }

  /**
   * The open conversation changed: the checkbox shows only while one is open (and is
   * off again when none is), and a search limited to a conversation follows it.
   */
  setPeer(peer) {
    if (peer === this.peer) return;
    this.peer = peer;
    this.scope.hidden = !peer;
    if (!peer) this.only.checked = false;
    const s = this.search;
    if (s.active && s.within !== this.within()) s.run(s.query, this.within());
  }

  stop() {
    clearTimeout(this.timer);
  }

  /** Whether the results take the conversation list's place. */
  get open() {
    return this.search.active;
  }

  /** @param {string | null} peer the open conversation */
  render(peer) {
    this.setPeer(peer || null);
    const s = this.search;
    const where = s.within ? ` in ${s.within}` : "";
    this.panel.hidden = !s.active;
    this.error.hidden = !s.error;
    this.error.textContent = s.error || "";
    this.status.textContent = s.loading
      ? `Searching${where}…`
      : s.error
        ? ""
        : !s.results.length
          ? `No messages found${where}.`
          : `${s.results.length}${s.hasMore ? "+" : ""} message${s.results.length === 1 && !s.hasMore ? "" : "s"} found${where}`;
    this.more.hidden = !s.hasMore;
    this.more.disabled = s.loading;
    this.more.textContent = s.loading && s.results.length ? "Loading…" : "More";
    const key = `${s.generation}:${s.results.length}`;
    if (this.shown === key) return;
    this.shown = key;
    replaceChildren(this.list, s.results.map((r) => this.result(r)));
  }

  result({ message, snippet }) {
    const mine = message.from === this.me;
    const peer = mine ? message.to : message.from;
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "search-result", dataset: { id: message.id, peer } },
        h("span", { class: "peer" }, peer),
        h("time", { class: "when", dateTime: message.sent_at, title: new Date(message.sent_at).toLocaleString() }, when(message.sent_at)),
        h("span", { class: "snippet" }, mine ? h("span", { class: "snippet-from" }, "You: ") : null, drawSnippet(snippet)),
      ),
    );
  }
}
