// The open conversation's messages: a window of history from `oldestLoaded` up to where the
// stored run ends (the latest message, or a gap still to be fetched when the chat was opened
// at its first unread), with date separators, the "New messages" divider and the outbox's
// pending messages at the tail. User content only ever goes in as text (ui.el), bodies as
// the server's sanitized HTML, checked again by richtext.js. Replies, reactions and the edit
// box come from their own modules (replies.js, reactions.js, edits.js).
import { dayKey, dayLabel, fullTime, timeOfDay } from "./dates.js";
import { reactionBar } from "./reactions.js";
import { quoted, quoteNode } from "./replies.js";
import { richText } from "./richtext.js";
import { RovingFocus } from "./roving.js";
import { renderAttachments } from "./attachments.js";
import { el } from "./ui.js";

const TICKS = {
  pending: { text: "", label: "Sending" }, // a clock, drawn in CSS
  sent: { text: "✓", label: "Sent" },
  delivered: { text: "✓✓", label: "Delivered" },
  read: { text: "✓✓", label: "Read" },
  failed: { text: "Not sent", label: "Not sent" },
};
const TOMBSTONES = {
  deleted: "This message was deleted.",
  removed: "This message was removed by a moderator.",
};
const GROUP_WITHIN_MS = 5 * 60 * 1000;
// Within this many pixels of the bottom the view follows new messages down.
const NEAR_BOTTOM_PX = 80;

/**
 * Elements are keyed by (sender, client_msg_id), which the server keeps unique, so a pending
 * message turns into the stored one in place; separators by their day.
 */
export class MessageView {
  /**
   * @param {object} options
   * @param {{observe(node), unobserve(node)}} options.rows  told about every message row (the read tracker)
   * @param {import("./edits.js").Editor} options.editor  which message is being edited, and its box
   * @param {object} options.actions  what a message's buttons do: (conversation, message, ...) => void
   */
  constructor({ list, scroller, store, actions, rows, editor }) {
    Object.assign(this, { list, scroller, store, actions, rows, editor });
    this.nodes = new Map(); // key -> {node, signature}
    this.conversation = null;
    this.dividerAfter = null;
    this.highlight = null;
    this.ready = false; // false while a conversation is being opened and positioned
    this.tailShown = false;
    this.roving = new RovingFocus(list, { items: ".message", start: "last" });
  }

  open(conversation, { highlight = null } = {}) {
    this.conversation = conversation;
    for (const { node } of this.nodes.values()) this.rows.unobserve(node);
    this.nodes.clear();
    this.list.replaceChildren();
    this.roving.current = null;
    this.highlight = highlight;
    this.ready = false;
    this.tailShown = false;
    // The unread divider stays where it was when the conversation was opened.
    const readSeq = conversation.info.me?.read_seq ?? conversation.lastSeq;
    this.dividerAfter = conversation.lastSeq > readSeq ? readSeq : null;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  /** Showing the latest message (nothing newer left to fetch)? */
  atTail() {
    return Boolean(this.conversation) && !this.conversation.hasNewer;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Put a row near the top of the scroller, with a line of what came before above it. */
  scrollToRow(node) {
    if (!node) return;
    const offset = node.getBoundingClientRect().top - this.scroller.getBoundingClientRect().top;
    this.scroller.scrollTop += offset - 24;
  }

  dividerNode() {
    return this.nodes.get("divider")?.node || null;
  }

  rowOf(seq) {
    return this.list.querySelector(`.message[data-seq="${Number(seq)}"]`);
  }

  items() {
    const conversation = this.conversation;
    const me = this.store.me.id;
    const end = conversation.windowEnd;
    const shown = [];
    for (let seq = conversation.oldestLoaded ?? end + 1; seq <= end; seq += 1) shown.push(conversation.messages.get(seq));
    if (!conversation.hasNewer) {
      const pending = [...conversation.pending.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
      for (const entry of pending) {
        shown.push({ ...entry, sender: this.store.me, state: "visible", pending: true, reply_to: entry.reply || null });
      }
    }
    const items = [];
    let day = null;
    let dividerPlaced = false;
    let previous = null;
    for (const message of shown) {
      const thisDay = dayKey(message.created_at);
      let continued = Boolean(previous) && previous.sender.id === message.sender.id
        && new Date(message.created_at) - new Date(previous.created_at) < GROUP_WITHIN_MS;
      if (thisDay !== day) {
        items.push({ key: `day:${thisDay}`, day: message.created_at });
        day = thisDay;
        continued = false;
      }
      if (!dividerPlaced && this.dividerAfter !== null && message.seq > this.dividerAfter && message.sender.id !== me) {
        items.push({ key: "divider", divider: true });
        dividerPlaced = true;
        continued = false;
      }
      items.push({ key: `${message.sender.id}:${message.client_msg_id}`, message, continued });
      previous = message;
    }
    return items;
  }

  render({ keepPosition = false, toBottom = false } = {}) {
    if (!this.conversation) return;
    // Follow new messages down only if the latest was already in view: a page of newer
    // history arriving at the bottom of the window must not skip past itself.
    const stick = toBottom || (this.tailShown && this.nearBottom());
    const heightBefore = this.scroller.scrollHeight;
    const topBefore = this.scroller.scrollTop;
    const items = this.items();
    const wanted = new Set(items.map((i) => i.key));
    for (const [key, { node }] of this.nodes) {
      if (!wanted.has(key)) { this.drop(node); this.nodes.delete(key); }
    }
    let cursor = this.list.firstChild;
    for (const item of items) {
      const signature = this.signature(item);
      let entry = this.nodes.get(item.key);
      if (!entry || entry.signature !== signature) {
        const node = this.build(item);
        if (entry) {
          if (cursor === entry.node) cursor = node;
          const wasFocused = entry.node.contains(document.activeElement);
          entry.node.replaceWith(node);
          this.drop(entry.node);
          if (wasFocused) node.focus({ preventScroll: true });
        }
        if (item.message?.seq) this.rows.observe(node);
        entry = { node, signature };
        this.nodes.set(item.key, entry);
      }
      if (entry.node === cursor) cursor = cursor.nextSibling;
      else this.list.insertBefore(entry.node, cursor);
    }
    const highlighted = this.highlight ? this.rowOf(this.highlight) : null;
    this.roving.refresh(highlighted && !this.roving.current ? highlighted : null);
    if (keepPosition) this.scroller.scrollTop = topBefore + (this.scroller.scrollHeight - heightBefore);
    else if (stick) this.scrollToBottom();
    this.tailShown = this.atTail();
  }

  drop(node) {
    this.rows.unobserve(node);
    node.remove();
    if (this.roving.current === node) this.roving.current = null;
  }

  signature(item) {
    if (item.divider) return "divider";
    if (item.day) return `day|${dayLabel(item.day)}`;
    const { message } = item;
    const tick = message.sender.id === this.store.me.id ? this.store.tickState(this.conversation, message) : "";
    const quote = message.reply_to ? quoted(this.conversation, message.reply_to) : null;
    return [message.seq || "p", message.version ?? 0, message.state, message.html ?? message.body,
            (message.attachments || []).map((a) => a.id).join(","), tick, item.continued,
            message.failed?.detail || "", message.seq === this.highlight, this.editor.signature(message),
            quote ? `${quote.state}:${quote.excerpt}` : "", Boolean(this.conversation.members)].join("|");
  }

  build(item) {
    if (item.divider) {
      return el("li", { cls: "unread-divider", attrs: { "data-divider": "unread" } }, el("span", { text: "New messages" }));
    }
    if (item.day) {
      return el("li", { cls: "day-separator", attrs: { "data-day": dayKey(item.day) } }, el("h3", { text: dayLabel(item.day) }));
    }
    return this.messageNode(item.message, item.continued);
  }

  messageNode(message, continued) {
    const mine = message.sender.id === this.store.me.id;
    const gone = message.state !== "visible"; // deleted by its sender, or removed by a moderator
    const stored = Boolean(message.seq);
    const member = Boolean(this.conversation.info.me);
    const tickState = mine ? this.store.tickState(this.conversation, message) : null;
    const classes = ["message", mine ? "mine" : "theirs"];
    if (continued) classes.push("continued");
    if (gone) classes.push("gone", message.state);
    if (tickState === "pending") classes.push("pending");
    if (tickState === "failed") classes.push("failed");
    if (message.seq && message.seq === this.highlight) classes.push("highlight");
    if (this.store.mentionsMe(message)) classes.push("mentions-me");

    // A continued message shows no name, but a screen reader still says who wrote it.
    const meta = el("div", { cls: "message-meta" },
      el("span", { cls: mine ? "visually-hidden" : "message-sender", text: mine ? "You" : message.sender.display_name }));
    const quote = message.reply_to && !gone
      ? quoteNode({ quote: quoted(this.conversation, message.reply_to), meId: this.store.me.id,
                    onJump: (seq) => this.actions.jump(this.conversation, seq) })
      : null;
    const editing = this.editor.isEditing(message);
    const bubble = editing ? this.editor.box(message) : this.bubble(message);
    const files = gone ? [] : message.attachments || [];
    if (files.length && !message.body && !editing) bubble.hidden = true;  // a file sent without words
    const reactions = reactionBar({
      message, store: this.store, conversation: this.conversation,
      onToggle: (m, emoji, mine) => this.actions.toggleReaction(this.conversation, m, emoji, mine),
      onAdd: (m, anchor) => this.actions.react(this.conversation, m, anchor),
    });
    const foot = el("div", { cls: "message-foot" },
      el("time", { text: timeOfDay(message.created_at), attrs: { datetime: message.created_at, title: fullTime(message.created_at) } }));
    if (message.edited_at && !gone) {
      foot.append(el("span", { cls: "edited", text: "(edited)", attrs: { title: `Edited ${fullTime(message.edited_at)}` } }));
    }

    const actions = el("span", { cls: "message-actions" });
    if (stored && !gone && member) {
      actions.append(this.actionButton("Reply", "reply", message), this.actionButton("React", "react", message));
    }
    if (this.editor.editable(message) && !this.editor.isEditing(message)) actions.append(this.actionButton("Edit", "edit", message));
    if (mine && stored && !gone) actions.append(this.actionButton("Delete", "delete", message));
    if (mine && stored) actions.append(this.actionButton("Info", "info", message));
    if (!mine && !gone && stored) actions.append(this.actionButton("Report", "flag", message));
    if (tickState === "failed") {
      actions.append(this.actionButton("Retry", "retry", message), this.actionButton("Discard", "discard", message));
    }
    if (tickState) {
      const tick = TICKS[tickState];
      const label = tickState === "failed" ? `Not sent: ${message.failed?.detail || "refused"}` : tick.label;
      foot.append(el("span", { cls: "tick", text: tick.text, attrs: { "data-state": tickState, title: label, "aria-label": label, role: "img" } }));
    }
    foot.append(actions);
    return el("li", {
      cls: classes.join(" "),
      attrs: { "data-seq": message.seq || false, "data-client-msg-id": message.client_msg_id,
               "data-message-id": message.id || false, "data-state": message.state, tabindex: "-1" },
    }, meta, quote, bubble, files.length ? renderAttachments(files, { onOpen: this.actions.viewImage }) : null,
    reactions, foot);
  }

  /** The body: a tombstone once gone, the server's HTML once stored, plain text while pending. */
  bubble(message) {
    if (message.state !== "visible") return el("div", { cls: "bubble", text: TOMBSTONES[message.state] || TOMBSTONES.removed });
    if (!message.html) return el("div", { cls: "bubble plain", text: message.body });
    return el("div", { cls: "bubble rich" }, richText(message.html, this.store.me.id));
  }

  actionButton(label, action, message) {
    const button = el("button", { cls: "link-button", text: label, attrs: { type: "button", tabindex: "-1" } });
    button.addEventListener("click", () => this.actions[action](this.conversation, message, button));
    return button;
  }
}
