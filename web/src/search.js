// Searching our own messages (the `search` event, through the connection's acknowledged
// calls like `history`): newest first, a page at a time, the next page `before` the
// last result's id. One query at a time: an answer to an older query is dropped. A
// search may be limited to one conversation (`with`: `within`). No DOM here; results.js
// shows it, and `snippetParts` is how a snippet becomes text and hits.

const PAGE = 20;
export const MAX_QUERY = 256;
export const MAX_TERMS = 16;
const HIT_START = "\u0002";
const HIT_END = "\u0003";

/** What a refused search says, by error code (the server's text otherwise). */
function errorText(error, query, within) {
  if (error.code === "not_found" && within) return `There is no user ${within}.`;
  if (error.code === "invalid") {
    if (query.length > MAX_QUERY) return `That query is too long: at most ${MAX_QUERY} characters.`;
    if (query.trim().split(/\s+/).length > MAX_TERMS) return `Too many words: at most ${MAX_TERMS}.`;
  }
  if (error.code === "offline") return "You are offline: search needs the connection.";
  if (error.code === "timeout") return "The server did not answer: try again.";
  if (error.code === "rate_limited") return "Too many requests: wait a moment and try again.";
  return error.message || "The search did not work.";
}

/**
 * A snippet as [{text, hit}]: U+0002 starts a hit and U+0003 ends one. Unbalanced
 * markers cannot make anything but text: a hit left open ends with the snippet.
 */
export function snippetParts(snippet) {
  const parts = [];
  let hit = false;
  let text = "";
  const flush = () => {
    if (text) parts.push({ text, hit });
    text = "";
  };
  for (const ch of String(snippet)) {
    if (ch === HIT_START || ch === HIT_END) {
      flush();
      hit = ch === HIT_START;
    } else text += ch;
  }
  flush();
  return parts;
}

export class Search {
  constructor(messenger) {
    this.messenger = messenger;
    this.generation = 0;
    this.reset();
  }

  reset() {
    this.query = "";
    this.within = null; // the peer a search is limited to, or null: every conversation
    this.results = []; // [{message, snippet}], newest first
    this.hasMore = false;
    this.loading = false;
    this.error = null;
  }

  /** Nothing searched: the conversation list shows again. */
  clear() {
    this.generation += 1;
    this.reset();
    this.messenger.changed();
  }

  get active() {
    return this.query !== "";
  }

  /** A new query (the box's text) in `within` or everywhere; empty or only spaces ends the search. */
  run(query, within = null) {
    if (!query.trim()) {
      this.clear();
      return Promise.resolve();
    }
    this.generation += 1;
    this.query = query;
    this.within = within;
    this.results = [];
    this.hasMore = false;
    this.error = null;
    return this.page(null);
  }

  /** The next page of the current query. */
  more() {
    if (!this.active || this.loading || !this.hasMore || !this.results.length) return Promise.resolve();
    return this.page(this.results[this.results.length - 1].message.id);
  }

  async page(before) {
    const messenger = this.messenger;
    const generation = this.generation;
    const query = this.query;
    const within = this.within;
    this.loading = true;
    messenger.changed();
    const payload = { query, limit: PAGE };
    if (before !== null) payload.before = before;
    if (within) payload.with = within;
    const answer = await messenger.connection.call("search", payload);
    if (generation !== this.generation) return; // a newer query (or none) took over
    this.loading = false;
    if (answer.ok && Array.isArray(answer.results)) {
      const seen = new Set(this.results.map((r) => r.message.id));
      for (const r of answer.results) {
        if (!r || !r.message || !Number.isSafeInteger(r.message.id) || seen.has(r.message.id)) continue;
        seen.add(r.message.id);
        this.results.push({ message: r.message, snippet: typeof r.snippet === "string" ? r.snippet : "" });
      }
      this.hasMore = answer.has_more === true && answer.results.length > 0;
      this.error = null;
    } else {
      this.error = errorText(answer.error || {}, query, within);
    }
    messenger.changed();
  }
}
