// The files chosen for the next message: by the composer's attach button or dropped on
// the conversation. They are shown above the composer (name, size, ✕ to take one out)
// and go with the next Send, with the text or without one (outbox.js uploads them).
import { h, replaceChildren } from "./dom.js";
import { ATTACHMENTS_MAX, formatSize, isImageType, uploadType } from "./uploads.js";

export class FileTray {
  /**
   * @param {() => void} onChange the chosen files changed (the composer re-checks)
   * @param {(text: string) => void} say a short notice (more than 10 files)
   */
  constructor(onChange, say) {
    this.onChange = onChange;
    this.say = say;
    this.files = [];
    this.input = h("input", { type: "file", multiple: true, id: "attach-input", hidden: true, tabIndex: -1 });
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file may be chosen again
    });
    this.button = h(
      "button",
      { type: "button", class: "attach", id: "attach", title: "Attach files", "aria-label": "Attach files" },
      "📎",
    );
    this.button.addEventListener("click", () => this.input.click());
    this.list = h("ul", { class: "tray", id: "tray", "aria-label": "Files to send", hidden: true });
  }

  add(chosen) {
    const room = ATTACHMENTS_MAX - this.files.length;
    if (chosen.length > room) this.say(`A message carries at most ${ATTACHMENTS_MAX} files.`);
    this.files.push(...chosen.slice(0, Math.max(0, room)));
    this.render();
  }

  /** The chosen files, handed over to a message: the tray is empty again. */
  take() {
    const taken = this.files;
    this.files = [];
    this.render();
    return taken;
  }

  clear() {
    if (this.files.length) this.take();
  }

  render() {
    this.list.hidden = this.files.length === 0;
    replaceChildren(
      this.list,
      this.files.map((file, n) => {
        const remove = h(
          "button",
          { type: "button", class: "link tray-remove", "aria-label": `Remove ${file.name}`, title: "Remove" },
          "✕",
        );
        remove.addEventListener("click", () => {
          this.files.splice(n, 1);
          this.render();
        });
        return h(
          "li",
          { class: "tray-file" },
          h("span", { class: "file-icon", "aria-hidden": "true" }, isImageType(uploadType(file)) ? "🖼" : "📄"),
          h("span", { class: "file-name" }, file.name),
          h("span", { class: "file-size" }, formatSize(file.size)),
          remove,
        );
      }),
    );
    this.onChange();
  }

  /**
   * Files dragged over `zone` are offered to drop there (it gets the class
   * "dropping"); dropped anywhere else they do nothing, instead of the browser leaving
   * the app to open them. Returns what takes the window's listeners away again.
   */
  watchDrops(zone, enabled) {
    let depth = 0; // dragenter/dragleave pairs: children fire them too
    const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
    const leave = () => {
      depth = 0;
      zone.classList.remove("dropping");
    };
    zone.addEventListener("dragenter", (event) => {
      if (!hasFiles(event) || !enabled()) return;
      depth += 1;
      zone.classList.add("dropping");
    });
    zone.addEventListener("dragleave", (event) => {
      if (!hasFiles(event)) return;
      depth -= 1;
      if (depth <= 0) leave();
    });
    zone.addEventListener("dragover", (event) => {
      if (!hasFiles(event) || !enabled()) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    zone.addEventListener("drop", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      leave();
      if (enabled()) this.add([...event.dataTransfer.files]);
    });
    // Not taken by the zone (elsewhere, or while the composer edits): no drop at all.
    const refuse = (event) => {
      if (!hasFiles(event) || event.defaultPrevented) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "none";
    };
    window.addEventListener("dragover", refuse);
    window.addEventListener("drop", refuse);
    return () => {
      window.removeEventListener("dragover", refuse);
      window.removeEventListener("drop", refuse);
    };
  }
}
