// The files of one message on screen (docs/attachments.md). A stored message shows an
// image as its thumbnail (a button that opens the full size) and any other file as a
// button that downloads it, with its name and size; a message still in the outbox shows
// each file with its upload's progress. Names are text, like everything else (dom.js).
// Each thumbnail's URL is released when its bubble redraws or leaves the screen.
import { h, replaceChildren } from "./dom.js";
import { imageUrl } from "./media.js";
import { formatSize, isImageType } from "./uploads.js";

// Thumbnails are drawn at most this many CSS pixels a side (the server's are 320).
const THUMB_BOX = 240;

/**
 * Shows the files of `view` (a stored Message, or an outbox entry: no id) in the
 * bubble `item`, redrawn only when they changed. `ctx`: {media (media.js), viewer
 * (viewer.js), progressOf(key)}.
 */
export function drawFiles(item, view, ctx) {
  const pending = !Number.isSafeInteger(view.id);
  const list = view.deleted ? [] : view.attachments || [];
  const key = pending
    ? `p:${view.state}:${JSON.stringify(list.map((a) => [a.key, a.id, percent(ctx.progressOf(a.key))]))}`
    : `s:${JSON.stringify(list.map((a) => [a.id, a.thumbnail]))}`;
  if (item.filesKey === key) return;
  item.filesKey = key;
  releaseFiles(item);
  item.files.hidden = list.length === 0;
  replaceChildren(
    item.files,
    list.map((a) => (pending ? pendingFile(a, view, ctx) : storedFile(a, item, ctx))),
  );
}

/** Lets go of the bubble's image URLs and stops the fetches still running. */
export function releaseFiles(item) {
  for (const release of item.fileReleases || []) release();
  item.fileReleases = [];
}

function percent(share) {
  return share === null ? null : Math.floor(share * 100);
}

function storedFile(a, item, ctx) {
  if (a.thumbnail && isImageType(a.content_type)) return thumbnail(a, item, ctx);
  const button = h(
    "button",
    {
      type: "button",
      class: "attachment-file",
      dataset: { attachment: a.id },
      title: `Download ${a.name}`,
      "aria-label": `Download ${a.name}, ${formatSize(a.size)}`,
    },
    h("span", { class: "file-icon", "aria-hidden": "true" }, "📄"),
    h("span", { class: "file-name" }, a.name),
    h("span", { class: "file-size" }, formatSize(a.size)),
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.classList.add("busy");
    await ctx.media.download(a);
    button.disabled = false;
    button.classList.remove("busy");
  });
  return button;
}

/** The image's size in the bubble, from its size in pixels, so nothing jumps on load. */
function boxed(a) {
  if (!(a.width > 0 && a.height > 0)) return {};
  const scale = Math.min(1, THUMB_BOX / a.width, THUMB_BOX / a.height);
  return { width: Math.max(1, Math.round(a.width * scale)), height: Math.max(1, Math.round(a.height * scale)) };
}

function thumbnail(a, item, ctx) {
  const img = h("img", { alt: a.name, ...boxed(a) });
  const button = h(
    "button",
    {
      type: "button",
      class: "attachment-image loading",
      dataset: { attachment: a.id },
      title: `${a.name} (${formatSize(a.size)})`,
      "aria-label": `Open ${a.name}`,
    },
    img,
    h("span", { class: "attachment-caption" }, a.name),
  );
  button.addEventListener("click", () => ctx.viewer.show(a));
  const abort = new AbortController();
  let release = null;
  ctx.media
    .fetch(a.id, { thumbnail: true, signal: abort.signal })
    .then(imageUrl)
    .then((shown) => {
      if (abort.signal.aborted) return shown.release();
      release = shown.release;
      img.src = shown.url;
      button.classList.remove("loading");
    })
    .catch((err) => {
      if (abort.signal.aborted) return;
      button.classList.replace("loading", "broken");
      if (err && err.code === "unauthorized") ctx.media.failed(err);
    });
  item.fileReleases.push(() => {
    abort.abort();
    if (release) release();
    img.removeAttribute("src");
  });
  return button;
}

function pendingFile(a, entry, ctx) {
  const share = ctx.progressOf(a.key);
  let state;
  if (a.id !== null) state = h("span", { class: "upload-state done" }, "Uploaded");
  else if (share !== null) {
    state = [
      h("progress", { max: 1, value: share, "aria-label": `Uploading ${a.name}` }),
      h("span", { class: "upload-state" }, `${percent(share)}%`),
    ];
  } else {
    state = h("span", { class: "upload-state" }, entry.state === "failed" ? "Not uploaded" : "Waiting to upload");
  }
  return h(
    "div",
    { class: "attachment-pending", dataset: { key: a.key } },
    h("span", { class: "file-icon", "aria-hidden": "true" }, isImageType(a.type) ? "🖼" : "📄"),
    h("span", { class: "file-name" }, a.name),
    h("span", { class: "file-size" }, formatSize(a.size)),
    state,
  );
}
