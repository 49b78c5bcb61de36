// The full size of an image attachment, over the page (a modal <dialog>: Escape, the
// ✕ or a click beside the image closes it). Fetched with the token like a thumbnail;
// its URL is released, and a fetch still running stopped, when it closes.
import { h } from "./dom.js";
import { imageUrl, saveAs } from "./media.js";
import { formatSize } from "./uploads.js";

export class ImageViewer {
  /** @param {import("./media.js").Media} media */
  constructor(media) {
    this.media = media;
    this.attachment = null;
    this.blob = null;
    this.shown = null;
    this.abort = null;
    this.img = h("img", { class: "viewer-image", alt: "", hidden: true });
    this.name = h("span", { class: "viewer-name" });
    this.status = h("p", { class: "viewer-status", role: "status" });
    const save = h("button", { type: "button", class: "viewer-download" }, "Download");
    save.addEventListener("click", () => this.save());
    const close = h("button", { type: "button", class: "viewer-close", "aria-label": "Close", title: "Close (Escape)" }, "✕");
    close.addEventListener("click", () => this.close());
    this.body = h("div", { class: "viewer-body" }, this.status, this.img);
    this.el = h(
      "dialog",
      { class: "viewer", id: "viewer", "aria-label": "Image" },
      h("header", { class: "viewer-head" }, this.name, save, close),
      this.body,
    );
    this.el.addEventListener("close", () => this.release());
    // A click on the backdrop or beside the image (not on it) closes it.
    this.el.addEventListener("click", (event) => {
      if (event.target === this.el || event.target === this.body) this.close();
    });
  }

  /** Opens attachment `a` (an image of a stored message). */
  async show(a) {
    this.release();
    this.attachment = a;
    this.name.textContent = `${a.name} · ${formatSize(a.size)}`;
    this.status.textContent = "Loading…";
    this.status.hidden = false;
    this.img.alt = a.name;
    if (!this.el.open) this.el.showModal();
    const abort = new AbortController();
    this.abort = abort;
    try {
      const blob = await this.media.fetch(a.id, { signal: abort.signal });
      const shown = await imageUrl(blob);
      if (abort.signal.aborted) return shown.release();
      this.blob = blob;
      this.shown = shown;
      this.img.src = shown.url;
      this.img.hidden = false;
      this.status.hidden = true;
    } catch (err) {
      if (abort.signal.aborted) return;
      this.status.textContent = "The image could not be loaded.";
      this.media.failed(err);
    }
  }

  save() {
    const a = this.attachment;
    if (!a) return;
    if (this.blob) saveAs(this.blob, a.name);
    else this.media.download(a);
  }

  close() {
    if (this.el.open) this.el.close(); // fires "close": release()
    else this.release();
  }

  release() {
    if (this.abort) this.abort.abort();
    if (this.shown) this.shown.release();
    this.abort = null;
    this.shown = null;
    this.blob = null;
    this.img.removeAttribute("src");
    this.img.hidden = true;
  }
}
