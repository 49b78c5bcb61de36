// What can change in a message after it was sent (docs/protocol.md 3.1, 3.6): its body
// (edit), a tombstone (delete for everyone), its disappearance for us (delete for me),
// its reactions, the quote of the message it replies to, and its files (gone with a
// delete). Pure functions, no DOM.
//
// Every Message the server sends shows the message as it is now, and a change never
// goes backwards, so merging is: take what came, except that a deleted message stays
// deleted, a hidden one stays hidden, and a body older than the one we show (by
// `edited_at`) is not taken (a history page read just before an edit that we already
// got from the stream).

export const EXCERPT_CHARS = 100;
export const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

/** True when `m` is a Message we can show (3.1); a deleted one has no body. */
export function isMessage(m, ranks) {
  return (
    m !== null &&
    typeof m === "object" &&
    Number.isSafeInteger(m.id) &&
    typeof m.from === "string" &&
    typeof m.to === "string" &&
    (typeof m.body === "string" || (m.body === null && (m.deleted === true || m.hidden === true))) &&
    m.status in ranks
  );
}

/** The fields 3.1 added, with their defaults for a server that sends none of them. */
export function withDefaults(m) {
  return {
    ...m,
    reply_to: m.reply_to && typeof m.reply_to === "object" ? m.reply_to : null,
    edited_at: typeof m.edited_at === "string" ? m.edited_at : null,
    deleted: m.deleted === true,
    reactions: cleanReactions(m.reactions),
    hidden: m.hidden === true,
    attachments: m.deleted === true || m.hidden === true ? [] : cleanAttachments(m.attachments),
  };
}

/** The files a message carries (docs/attachments.md), those that look like one. */
function cleanAttachments(value) {
  if (!Array.isArray(value)) return [];
  return value
    .filter((a) => a && typeof a === "object" && Number.isSafeInteger(a.id) && typeof a.name === "string")
    .map((a) => ({
      id: a.id,
      name: a.name,
      size: Number.isSafeInteger(a.size) ? a.size : -1,
      content_type: typeof a.content_type === "string" ? a.content_type : "application/octet-stream",
      width: Number.isSafeInteger(a.width) ? a.width : null,
      height: Number.isSafeInteger(a.height) ? a.height : null,
      thumbnail: a.thumbnail === true,
    }));
}

function cleanReactions(value) {
  const out = {};
  if (!value || typeof value !== "object") return out;
  for (const [emoji, users] of Object.entries(value)) {
    if (Array.isArray(users) && users.length) out[emoji] = users.filter((u) => typeof u === "string");
  }
  return out;
}

/**
 * Copies the content of `from` (a Message as the server sent it) into `into` (the one
 * object we keep per id). Returns whether the body changed, so replies can follow.
 */
export function mergeContent(into, from) {
  const fresh = withDefaults(from);
  if (into.hidden) return false;
  if (fresh.hidden) {
    Object.assign(into, { hidden: true, deleted: true, body: null, reply_to: null, reactions: {}, attachments: [] });
    return true;
  }
  if (into.deleted) return false;
  if (fresh.deleted) {
    // Its files went with it (unlinked in the delete's transaction).
    Object.assign(into, { deleted: true, body: null, reply_to: null, reactions: {}, attachments: [] });
    return true;
  }
  into.reactions = fresh.reactions;
  if (Array.isArray(from.attachments)) into.attachments = fresh.attachments;
  if (from.reply_to !== undefined) into.reply_to = fresh.reply_to;
  const older = into.edited_at && (!fresh.edited_at || fresh.edited_at < into.edited_at);
  if (older || into.body === fresh.body) return false;
  into.body = fresh.body;
  into.edited_at = fresh.edited_at;
  return true;
}

/** The first 100 characters (code points, as the server counts) of a body. */
export function excerpt(body) {
  const chars = Array.from(body || "");
  return chars.length > EXCERPT_CHARS ? chars.slice(0, EXCERPT_CHARS).join("") : body || "";
}

/** The `reply_to` a reply to `original` shows now (3.1): its excerpt, or a tombstone. */
export function quoteOf(original) {
  if (original.deleted) return { id: original.id, deleted: true };
  return { id: original.id, from: original.from, excerpt: excerpt(original.body) };
}

/** Users who reacted with `emoji`, and whether `me` is one of them. */
export function reactionsOf(message, me) {
  return Object.entries(message.reactions || {})
    .filter(([, users]) => users.length > 0)
    .map(([emoji, users]) => ({ emoji, users, mine: users.includes(me) }));
}

/** What stands for a message's files where there is no room for them (list, quote). */
export function filesLabel(attachments) {
  if (!attachments || !attachments.length) return "";
  return attachments.length === 1 ? `📎 ${attachments[0].name}` : `📎 ${attachments.length} files`;
}
