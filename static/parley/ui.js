// Rendering. User content (bodies, names, titles) only ever goes in through textContent or
// attribute values, never as HTML, so a message can't inject markup or script.

const TICKS = {
  pending: { text: "", label: "Sending" }, // a clock, drawn in CSS
  sent: { text: "✓", label: "Sent" },
  delivered: { text: "✓✓", label: "Delivered" },
  read: { text: "✓✓", label: "Read" },
  failed: { text: "Not sent", label: "Not sent" },
};
const GROUP_WITHIN_MS = 5 * 60 * 1000;

/** An element with text content and attributes; children are appended in order. */
export function el(tag, { cls, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function shortTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFormat.format(date) : dayFormat.format(date);
}

export const fullTime = (iso) => (iso ? fullFormat.format(new Date(iso)) : "");

function initials(text) {
  const words = text.trim().split(/\s+/).filter(Boolean);
  return ((words[0]?.[0] || "?") + (words[1]?.[0] || "")).toUpperCase();
}

export function replaceChildren(parent, children) {
  parent.replaceChildren(...children.filter(Boolean));
}

// --- conversation list ---------------------------------------------------------------------------

export function renderConversationList(listEl, store, activeId) {
  const focusedId = document.activeElement?.closest?.("[data-conversation]")?.dataset.conversation;
  const items = store.sortedConversations().map((conversation) => {
    const title = store.title(conversation);
    const unread = store.unread(conversation);
    const avatar = el("span", { cls: "avatar", text: initials(title), attrs: { "data-kind": conversation.info.kind, "aria-hidden": "true" } });
    const peer = store.peer(conversation);
    let presenceText = "";
    if (peer && store.presence.has(peer.id)) {
      const online = store.presence.get(peer.id);
      avatar.append(el("span", { cls: "presence-dot", attrs: { "data-online": String(online) } }));
      presenceText = online ? ", online" : ", offline";
    }
    const preview = previewText(store, conversation);
    const label = `${title}${presenceText}${unread ? `, ${unread} unread` : ""}`;
    const link = el("a", {
      cls: `conversation-item${unread ? " has-unread" : ""}`,
      attrs: { href: `/c/${conversation.id}`, "data-conversation": conversation.id, "aria-label": label,
               "aria-current": conversation.id === activeId ? "page" : false },
    },
    avatar,
    el("span", { cls: "conversation-title", text: title }),
    el("span", { cls: "conversation-time", text: shortTime(lastActivity(conversation)) }),
    el("span", { cls: "conversation-preview", text: preview }),
    unread ? el("span", { cls: "unread-badge", text: unread > 99 ? "99+" : String(unread), attrs: { "aria-hidden": "true" } }) : null);
    return el("li", {}, link);
  });
  replaceChildren(listEl, items);
  if (focusedId) listEl.querySelector(`[data-conversation="${CSS.escape(focusedId)}"]`)?.focus();
}

function lastActivity(conversation) {
  const last = conversation.lastMessage;
  const at = conversation.info.last_activity_at || conversation.info.created_at;
  return last && last.created_at > at ? last.created_at : at;
}

function previewText(store, conversation) {
  const pending = [...conversation.pending.values()].at(-1);
  if (pending) return `You: ${pending.body}`;
  const last = conversation.lastMessage;
  if (!last) return conversation.info.last_seq ? "" : "No messages yet";
  if (last.state === "removed") return "Message removed";
  const who = last.sender.id === store.me.id ? "You: " : conversation.info.kind === "direct" ? "" : `${last.sender.display_name}: `;
  return who + last.body.replace(/\s+/g, " ");
}

// --- connection status ----------------------------------------------------------------------------

export function renderConnection(box, status, now = Date.now()) {
  box.dataset.state = status.state;
  const text = box.querySelector("#connection-text");
  const retry = box.querySelector("#reconnect-now");
  retry.hidden = status.state !== "reconnecting";
  if (status.state === "online") text.textContent = "Online";
  else if (status.state === "connecting") text.textContent = "Connecting…";
  else if (status.state === "offline") text.textContent = "Offline: messages wait until you're back";
  else if (status.retryAt) {
    const seconds = Math.max(0, Math.ceil((status.retryAt - now) / 1000));
    text.textContent = seconds ? `Reconnecting in ${seconds}s` : "Reconnecting…";
  } else text.textContent = "Reconnecting…";
}

// --- messages --------------------------------------------------------------------------------------

/**
 * The open conversation's messages. Elements are keyed by (sender, client_msg_id), which
 * the server keeps unique, so a pending message turns into the stored one in place.
 */
export class MessageView {
  constructor({ list, scroller, store, actions }) {
    Object.assign(this, { list, scroller, store, actions });
    this.nodes = new Map(); // key -> {node, signature}
    this.conversation = null;
    this.dividerAfter = null;
  }

  open(conversation) {
    this.conversation = conversation;
    this.nodes.clear();
    this.list.replaceChildren();
    // The unread divider stays where it was when the conversation was opened.
    const readSeq = conversation.info.me?.read_seq ?? conversation.lastSeq;
    this.dividerAfter = conversation.lastSeq > readSeq ? readSeq : null;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  items() {
    const conversation = this.conversation;
    const me = this.store.me.id;
    const stored = [...conversation.messages.values()]
      .filter((m) => conversation.oldestLoaded !== null && m.seq >= conversation.oldestLoaded)
      .sort((a, b) => a.seq - b.seq);
    const items = [];
    let dividerPlaced = false;
    for (const message of stored) {
      if (!dividerPlaced && this.dividerAfter !== null && message.seq > this.dividerAfter && message.sender.id !== me) {
        items.push({ key: "divider", divider: true });
        dividerPlaced = true;
      }
      items.push({ key: `${message.sender.id}:${message.client_msg_id}`, message });
    }
    const pending = [...conversation.pending.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : 1));
    for (const entry of pending) {
      items.push({ key: `${me}:${entry.client_msg_id}`,
                   message: { ...entry, sender: this.store.me, state: "visible", pending: true } });
    }
    return items;
  }

  render({ keepPosition = false, toBottom = false } = {}) {
    if (!this.conversation) return;
    const stick = toBottom || this.nearBottom();
    const heightBefore = this.scroller.scrollHeight;
    const topBefore = this.scroller.scrollTop;
    const items = this.items();
    const wanted = new Set(items.map((i) => i.key));
    for (const [key, { node }] of this.nodes) {
      if (!wanted.has(key)) { node.remove(); this.nodes.delete(key); }
    }
    let previous = null;
    let cursor = this.list.firstChild;
    for (const item of items) {
      const continued = !item.divider && previous?.message && previous.message.sender.id === item.message.sender.id
        && new Date(item.message.created_at) - new Date(previous.message.created_at) < GROUP_WITHIN_MS;
      const signature = item.divider ? "divider" : this.signature(item.message, continued);
      let entry = this.nodes.get(item.key);
      if (!entry || entry.signature !== signature) {
        const node = item.divider ? this.divider() : this.messageNode(item.message, continued);
        if (entry) {
          if (cursor === entry.node) cursor = node;
          entry.node.replaceWith(node);
        }
        entry = { node, signature };
        this.nodes.set(item.key, entry);
      }
      if (entry.node === cursor) cursor = cursor.nextSibling;
      else this.list.insertBefore(entry.node, cursor);
      previous = item;
    }
    if (keepPosition) this.scroller.scrollTop = topBefore + (this.scroller.scrollHeight - heightBefore);
    else if (stick) this.scrollToBottom();
  }

  signature(message, continued) {
    const tick = message.sender.id === this.store.me.id ? this.store.tickState(this.conversation, message) : "";
    return [message.seq || "p", message.state, message.body, tick, continued, message.failed?.detail || ""].join("|");
  }

  divider() {
    return el("li", { cls: "unread-divider", text: "New messages", attrs: { "data-divider": "unread" } });
  }

  messageNode(message, continued) {
    const mine = message.sender.id === this.store.me.id;
    const removed = message.state === "removed";
    const tickState = mine ? this.store.tickState(this.conversation, message) : null;
    const classes = ["message", mine ? "mine" : "theirs"];
    if (continued) classes.push("continued");
    if (removed) classes.push("removed");
    if (tickState === "pending") classes.push("pending");
    if (tickState === "failed") classes.push("failed");

    const meta = el("div", { cls: "message-meta" },
      mine ? null : el("span", { cls: "message-sender", text: message.sender.display_name }));
    const bubble = el("div", { cls: "bubble", text: removed ? "This message was removed by a moderator." : message.body });
    const foot = el("div", { cls: "message-foot" },
      el("time", { text: shortTime(message.created_at), attrs: { datetime: message.created_at, title: fullTime(message.created_at) } }));

    const actions = el("span", { cls: "message-actions" });
    if (mine && message.seq) actions.append(this.actionButton("Info", "info", message));
    if (!mine && !removed && message.seq) actions.append(this.actionButton("Report", "flag", message));
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
      attrs: { "data-seq": message.seq || false, "data-client-msg-id": message.client_msg_id, "data-state": removed ? "removed" : "visible" },
    }, meta, bubble, foot);
  }

  actionButton(label, action, message) {
    const button = el("button", { cls: "link-button", text: label, attrs: { type: "button" } });
    button.addEventListener("click", () => this.actions[action](this.conversation, message));
    return button;
  }
}

// --- small pieces -------------------------------------------------------------------------------------

export function renderTyping(node, names) {
  if (!names.length) node.textContent = "";
  else if (names.length === 1) node.textContent = `${names[0]} is typing…`;
  else node.textContent = `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
}

let toastTimer = null;
export function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

/** A list row: a name, a secondary line, and one button (named for screen readers with the row's name). */
export function pickRow(name, sub, buttonLabel, onClick, { disabled = false, label } = {}) {
  const button = el("button", { cls: "button small", text: buttonLabel,
                                attrs: { type: "button", disabled, "aria-label": label || `${buttonLabel} ${name}` } });
  button.addEventListener("click", onClick);
  return el("li", {},
    el("span", { cls: "pick-name" }, el("span", { text: name }), sub ? el("span", { cls: "pick-sub", text: ` ${sub}` }) : null),
    button);
}
