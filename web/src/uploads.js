// One file to the server (docs/attachments.md): `POST /api/v1/attachments?name=` with
// the raw bytes as the body. XMLHttpRequest rather than fetch because only it reports
// how much of a request body went out (`upload.onprogress`), which the bubble shows.
import { ApiError } from "./api.js";

export const ATTACHMENTS_MAX = 10; // per message (the server's limit)
const NAME_MAX = 255;
// The server's media type pattern: anything else is sent as plain bytes.
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$/;
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

/**
 * A name the server takes: printable (a macOS screenshot has a narrow no-break space
 * before "PM", which it refuses), without a path, 1 to 255 code points.
 */
export function safeName(name) {
  const chars = Array.from(String(name || "").replace(/[\p{C}\p{Z}]/gu, " ").replace(/[/\\]/g, "_"));
  const clean = chars.slice(0, NAME_MAX).join("").trim();
  return clean && clean !== "." && clean !== ".." ? clean : "file";
}

/** The Content-Type to declare: the browser's guess when the server would take it. */
export function uploadType(blob) {
  const type = (blob.type || "").split(";", 1)[0].trim().toLowerCase();
  return MEDIA_TYPE.test(type) ? type : "application/octet-stream";
}

/** Shown inline (as a thumbnail) by the server, the rest are downloads. */
export function isImageType(type) {
  return IMAGE_TYPES.has(type);
}

export function formatSize(bytes) {
  if (!(bytes >= 0)) return "";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** Failures worth trying again later (the network, the server busy or restarting). */
export function retryableUpload(err) {
  return err instanceof ApiError && (err.status === 0 || err.status === 429 || err.status >= 500);
}

/**
 * Uploads `blob`; resolves with the server's answer ({id, name, size, ...}), rejects
 * with an ApiError (status 0 for the network). `onProgress(sent, total)` follows the
 * body going out. `signal` aborts it.
 */
export function upload(token, blob, name, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/attachments?name=${encodeURIComponent(safeName(name))}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.setRequestHeader("Content-Type", uploadType(blob));
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : blob.size);
    xhr.onload = () => {
      const data = xhr.response;
      if (xhr.status === 201 && data && Number.isSafeInteger(data.id)) {
        onProgress(blob.size, blob.size);
        resolve(data);
        return;
      }
      const error = (data && data.error) || {};
      reject(new ApiError(xhr.status, error.code || "internal", error.message || `The server answered ${xhr.status}.`));
    };
    xhr.onerror = () => reject(new ApiError(0, "offline", "The server cannot be reached."));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "The upload was stopped."));
    if (signal) {
      if (signal.aborted) return reject(new ApiError(0, "aborted", "The upload was stopped."));
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(blob);
  });
}
