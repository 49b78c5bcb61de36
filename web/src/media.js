// Attachments coming back from the server (docs/attachments.md). They need the bearer
// token, which an <img src> or a link cannot carry, so the page fetches the bytes
// itself and shows them through a URL it made: an object URL, revoked as soon as the
// image leaves the screen. (Where the page's Content-Security-Policy does not allow
// `blob:` images, a data: URL instead: the same bytes, freed with the element.)
import { ApiError } from "./api.js";
import { h } from "./dom.js";

// How long a download's object URL outlives its click: the browser reads the Blob
// after the click returns, and revoking at once can cancel the download.
const DOWNLOAD_URL_MS = 60000;

/** The bytes of attachment `id` (its thumbnail with `thumbnail`), as a Blob. */
export async function fetchAttachment(token, id, { thumbnail = false, signal } = {}) {
  let response;
  try {
    response = await fetch(`/api/v1/attachments/${encodeURIComponent(id)}${thumbnail ? "/thumbnail" : ""}`, {
      headers: { Authorization: `Bearer ${token}` },
      credentials: "omit",
      signal,
    });
  } catch {
    if (signal && signal.aborted) throw new ApiError(0, "aborted", "Stopped.");
    throw new ApiError(0, "offline", "The server cannot be reached.");
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // Not JSON.
    }
    throw new ApiError(response.status, error.code || "internal", error.message || `The server answered ${response.status}.`);
  }
  return response.blob();
}

let blobImages = null; // Promise<boolean>: may an <img> show a blob: URL on this page?

/** Asked once, with a 1x1 image: the page's CSP decides, and no API says it. */
function blobImagesAllowed() {
  if (!blobImages) {
    blobImages = new Promise((resolve) => {
      const canvas = h("canvas", { width: 1, height: 1 });
      canvas.toBlob((blob) => {
        if (!blob) return resolve(false);
        const url = URL.createObjectURL(blob);
        const probe = new Image();
        const settle = (allowed) => {
          URL.revokeObjectURL(url);
          resolve(allowed);
        };
        probe.onload = () => settle(true);
        probe.onerror = () => settle(false);
        probe.src = url;
      }, "image/png");
    });
  }
  return blobImages;
}

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** A URL an <img> can show `blob` with, and `release()` to call when it is gone. */
export async function imageUrl(blob) {
  if (await blobImagesAllowed()) {
    const url = URL.createObjectURL(blob);
    return { url, release: () => URL.revokeObjectURL(url) };
  }
  return { url: await dataUrl(blob), release: () => {} };
}

/** Saves `blob` as `name` through a temporary <a download>: the user's download. */
export function saveAs(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_MS);
}

/** What the views use: fetching with this session's token, and saying what failed. */
export class Media {
  constructor(messenger) {
    this.messenger = messenger;
  }

  fetch(id, options) {
    return fetchAttachment(this.messenger.token, id, options);
  }

  /** Downloads attachment `a` under its name; false (and a notice) if it failed. */
  async download(a) {
    try {
      saveAs(await this.fetch(a.id), a.name);
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  failed(err) {
    if (err instanceof ApiError && err.code === "aborted") return;
    if (err instanceof ApiError && err.code === "unauthorized") {
      this.messenger.sessionEnded();
      return;
    }
    const text =
      err instanceof ApiError && err.status === 404
        ? "That file is no longer available."
        : err instanceof ApiError && err.code === "offline"
          ? "You are offline: the file cannot be fetched now."
          : "The file could not be fetched.";
    this.messenger.changes.say(text);
  }
}
