// The menu of one message (reply, edit, delete, react), one open at a time. It opens
// from the bubble's ⋯ button, by mouse or by Enter/Space on it; the arrow keys, Home
// and End move through it; Escape closes it and gives focus back to the button; a
// click elsewhere or Tab closes it too. (The WAI-ARIA menu button pattern.)
import { h } from "./dom.js";

const NEXT = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };

export class MessageMenu {
  constructor() {
    this.el = null;
    this.button = null;
    this.items = [];
    this.onOutside = (event) => {
      if (this.el && !this.el.contains(event.target) && !this.button.contains(event.target)) {
        this.close(false);
      }
    };
  }

  isOpenFor(button) {
    return this.el !== null && this.button === button && this.el.isConnected;
  }

  /**
   * @param {HTMLElement} button the ⋯ button; the menu goes into its bubble
   * @param {{label: string, action: string, run: () => void}[]} entries
   * @param {{emoji: string, mine: boolean, run: () => void}[]} emojis a row on top
   */
  open(button, entries, emojis) {
    this.close(false);
    this.items = [];
    const row = emojis.length
      ? h(
          "div",
          { class: "menu-reactions", role: "group", "aria-label": "React" },
          emojis.map((e) =>
            this.item(e.emoji, e.run, {
              class: e.mine ? "menu-emoji mine" : "menu-emoji",
              role: "menuitemcheckbox",
              "aria-checked": e.mine ? "true" : "false",
              "aria-label": e.mine ? `Remove ${e.emoji}` : `React with ${e.emoji}`,
              dataset: { emoji: e.emoji },
            }),
          ),
        )
      : null;
    const list = entries.map((e) =>
      this.item(e.label, e.run, { class: `menu-item ${e.danger ? "danger" : ""}`, dataset: { action: e.action } }),
    );
    this.el = h("div", { class: "message-menu", role: "menu", "aria-label": "Message actions" }, row, list);
    this.el.addEventListener("keydown", (event) => this.onKey(event));
    this.button = button;
    button.setAttribute("aria-expanded", "true");
    button.parentElement.append(this.el);
    document.addEventListener("mousedown", this.onOutside, true);
    this.el.scrollIntoView({ block: "nearest" });
    this.items[0].focus();
  }

  item(label, run, props) {
    const button = h("button", { type: "button", role: "menuitem", tabIndex: -1, ...props }, label);
    button.addEventListener("click", () => {
      this.close(true);
      run();
    });
    this.items.push(button);
    return button;
  }

  /** `restoreFocus`: back to the ⋯ button (Escape, a choice), else leave it be. */
  close(restoreFocus) {
    if (!this.el) return;
    document.removeEventListener("mousedown", this.onOutside, true);
    const button = this.button;
    this.el.remove();
    this.el = null;
    this.button = null;
    this.items = [];
    button.setAttribute("aria-expanded", "false");
    if (restoreFocus && button.isConnected) button.focus();
  }

  onKey(event) {
    const at = this.items.indexOf(document.activeElement);
    let to = null;
    if (event.key in NEXT) to = (at + NEXT[event.key] + this.items.length) % this.items.length;
    else if (event.key === "Home") to = 0;
    else if (event.key === "End") to = this.items.length - 1;
    else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close(true);
      return;
    } else if (event.key === "Tab") {
      this.close(false);
      return;
    }
    if (to === null) return;
    event.preventDefault();
    this.items[to].focus();
  }
}
