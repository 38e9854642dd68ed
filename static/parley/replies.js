// Replies (CONTRACT v1.1, `reply_to`): the quote above a reply, which follows the original's
// edits and deletion (the copy this page holds, else the server's excerpt) and takes you to
// the original; and the "Replying to …" bar above the composer while you write one.
import { el } from "./ui.js";

const EXCERPT_CHARS = 100; // as the server cuts them (PARLEY_REPLY_EXCERPT_CHARS)

/** Whitespace collapsed and cut at a word, like the server's excerpts. */
export function excerptOf(body) {
  const text = body.split(/\s+/).filter(Boolean).join(" ");
  if (text.length <= EXCERPT_CHARS) return text;
  const head = text.slice(0, EXCERPT_CHARS + 1);
  const cut = head.includes(" ") ? head.slice(0, head.lastIndexOf(" ")) : text.slice(0, EXCERPT_CHARS);
  return `${cut.trimEnd()}…`;
}

/** What a reply shows of its original: {id, seq, sender, excerpt, state}, as current as this page knows. */
export function quoted(conversation, reply) {
  const original = conversation?.messageById(reply.id, reply.seq);
  if (!original) return reply;
  return { ...reply, state: original.state, excerpt: original.state === "visible" ? excerptOf(original.body) : "" };
}

function quoteText(quote) {
  if (quote.state === "deleted") return "Deleted message";
  if (quote.state === "removed") return "Message removed by a moderator";
  return quote.excerpt;
}

/** The quote above a reply: a button that goes to the original. */
export function quoteNode({ quote, meId, onJump }) {
  const who = quote.sender.id === meId ? "You" : quote.sender.display_name;
  const text = quoteText(quote);
  // Named by its own text (what is seen is what is said), with the words around it hidden.
  const hidden = (words) => el("span", { cls: "visually-hidden", text: words });
  const button = el("button", {
    cls: `reply-quote${quote.state === "visible" ? "" : " gone"}`,
    attrs: { type: "button", tabindex: "-1", "data-reply-to": quote.seq },
  }, hidden("In reply to "), el("span", { cls: "reply-quote-sender", text: who }), hidden(": "),
  el("span", { cls: "reply-quote-text", text }), hidden(". Go to that message."));
  button.addEventListener("click", () => onJump(quote.seq));
  return button;
}

/** The bar above the composer while a reply is being written, one per conversation. */
export class ReplyComposer {
  constructor({ bar, input, meId }) {
    Object.assign(this, { bar, input, meId });
    this.replying = new Map(); // conversation id -> {id, seq, sender, excerpt, state}
    this.conversationId = null;
    bar.querySelector("[data-cancel-reply]").addEventListener("click", () => {
      this.cancel();
      input.focus();
    });
  }

  /** Start answering `message` in its conversation. */
  start(conversationId, message) {
    this.replying.set(conversationId, {
      id: message.id, seq: message.seq, sender: message.sender, excerpt: excerptOf(message.body), state: message.state,
    });
    this.show(conversationId);
    this.input.focus();
  }

  /** The reply being written in a conversation (its quote), or null. */
  current(conversationId = this.conversationId) {
    return this.replying.get(conversationId) || null;
  }

  cancel(conversationId = this.conversationId) {
    this.replying.delete(conversationId);
    this.show(conversationId);
  }

  /** Show the bar for the open conversation (or hide it). */
  show(conversationId) {
    this.conversationId = conversationId;
    const quote = this.current();
    this.bar.hidden = !quote;
    if (!quote) {
      this.input.setAttribute("aria-describedby", "composer-help");
      return;
    }
    const who = quote.sender.id === this.meId ? "yourself" : quote.sender.display_name;
    this.bar.querySelector("[data-reply-who]").textContent = `Replying to ${who}`;
    this.bar.querySelector("[data-reply-excerpt]").textContent = quoteText(quote);
    this.input.setAttribute("aria-describedby", `composer-help ${this.bar.id}`);
  }
}
