// One message on screen. Its parts (quote, files, body, reactions, "edited", tick) are
// updated in place (the files by attachments.js), each only when what it shows changed, so an edit or a reaction
// does not move focus or the scroll position. Everything is text (dom.js).
import { h, replaceChildren } from "./dom.js";
import { reactionsOf } from "./lifecycle.js";

export const TOMBSTONE = "This message was deleted";

const TICKS = {
  pending: ["◷", "Waiting to be sent"],
  failed: ["!", "Not sent"],
  sent: ["✓", "Stored on the server"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

export function time(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function tick(status, detail) {
  const [mark, title] = TICKS[status];
  return h("span", { class: `tick tick-${status}`, title: detail || title, "aria-label": title }, mark);
}

/** How a user is named to `me`. */
export function nameFor(user, me) {
  return user === me ? "You" : user;
}

/** An empty bubble; `updateBubble` fills it. */
export function createBubble(mine) {
  const item = {
    menuButton: h(
      "button",
      {
        type: "button",
        class: "menu-button",
        title: "Message actions",
        "aria-label": "Message actions",
        "aria-haspopup": "menu",
        "aria-expanded": "false",
        hidden: true,
      },
      "⋯",
    ),
    quote: h("button", { type: "button", class: "quote", hidden: true }),
    files: h("div", { class: "attachments", hidden: true }),
    filesKey: null,
    fileReleases: [],
    body: h("div", { class: "body" }),
    reactions: h("div", { class: "reactions", hidden: true }),
    edited: h("span", { class: "edited", hidden: true }, "edited"),
    when: h("time"),
    shown: {}, // part -> the key of what it shows now
    status: null,
    detail: null,
  };
  item.meta = h("div", { class: "meta" }, item.edited, item.when);
  item.el = h(
    "li",
    { class: `message ${mine ? "mine" : "theirs"}` },
    item.menuButton,
    item.quote,
    item.files,
    item.body,
    item.reactions,
    item.meta,
  );
  return item;
}

/** Runs `draw` only when `key` differs from what the part shows. */
function part(item, name, key, draw) {
  if (item.shown[name] === key) return;
  item.shown[name] = key;
  draw();
}

/**
 * Shows `view` (a stored Message, or an outbox entry: no id, no reactions yet).
 * `me` names the user, for "You" and for which reactions are ours.
 */
export function updateBubble(item, view, me) {
  const deleted = view.deleted === true;
  item.el.classList.toggle("deleted", deleted);
  item.menuButton.hidden = !Number.isSafeInteger(view.id);
  part(item, "quote", JSON.stringify(view.reply_to || null), () => drawQuote(item.quote, view.reply_to, me));
  part(item, "body", deleted ? "\u0000deleted" : view.body, () => {
    item.body.className = deleted ? "body tombstone" : "body";
    item.body.textContent = deleted ? TOMBSTONE : view.body;
    item.body.hidden = !deleted && !view.body; // files only
  });
  part(item, "reactions", JSON.stringify(view.reactions || {}), () =>
    drawReactions(item.reactions, reactionsOf(view, me), me),
  );
  const edited = !deleted && view.edited_at ? view.edited_at : null;
  part(item, "edited", String(edited), () => {
    item.edited.hidden = !edited;
    item.edited.title = edited ? `Edited ${new Date(edited).toLocaleString()}` : "";
  });
  const at = view.sent_at || view.queued_at;
  part(item, "when", at, () => {
    item.when.dateTime = at;
    item.when.textContent = time(at);
  });
}

function drawQuote(el, quote, me) {
  el.hidden = !quote;
  if (!quote) return;
  el.dataset.replyTo = String(quote.id);
  el.classList.toggle("quote-deleted", quote.deleted === true);
  el.title = "Show the message this replies to";
  if (quote.deleted) replaceChildren(el, h("span", { class: "quote-text" }, "deleted message"));
  else {
    replaceChildren(
      el,
      h("span", { class: "quote-from" }, nameFor(quote.from, me)),
      h("span", { class: "quote-text" }, quote.excerpt),
    );
  }
}

function drawReactions(el, reactions, me) {
  el.hidden = reactions.length === 0;
  replaceChildren(
    el,
    reactions.map(({ emoji, users, mine }) => {
      const names = users.map((u) => nameFor(u, me)).join(", ");
      return h(
        "button",
        {
          type: "button",
          class: mine ? "reaction mine" : "reaction",
          dataset: { emoji },
          title: mine ? `${names} (click to remove yours)` : names,
          "aria-pressed": mine ? "true" : "false",
          "aria-label": `${emoji} ${users.length}: ${names}`,
        },
        h("span", { class: "emoji" }, emoji),
        h("span", { class: "count" }, String(users.length)),
      );
    }),
  );
}

/** The tick of one of our messages, replaced only when it changed. */
export function setTick(item, status, mine, detail) {
  if (item.status === status && item.detail === detail) return;
  item.status = status;
  item.detail = detail;
  item.el.dataset.status = status;
  if (!mine) return;
  const old = item.meta.querySelector(".tick");
  const fresh = tick(status, detail);
  if (old) old.replaceWith(fresh);
  else item.meta.append(fresh);
}
