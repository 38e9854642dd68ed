// Rendering. User content (bodies, names, titles) only ever goes in through textContent or
// attribute values, never as HTML, so a message can't inject markup or script.
import { lastSeen, shortWhen } from "./dates.js";
import { isMuted, isQuiet } from "./notify.js";

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
  const focusedMute = document.activeElement?.dataset?.mute;
  const items = store.sortedConversations().map((conversation) => {
    const title = store.title(conversation);
    const unread = store.unread(conversation);
    const mentions = unread ? store.unreadMentions(conversation) : 0;
    const avatar = el("span", { cls: "avatar", text: initials(title), attrs: { "data-kind": conversation.info.kind, "aria-hidden": "true" } });
    const peer = store.peer(conversation);
    let presenceText = "";
    if (peer && store.presence.has(peer.id)) {
      // While we are offline ourselves, what we last heard may no longer be true: greyed.
      const online = store.presenceOf(peer.id);
      avatar.append(el("span", { cls: "presence-dot", attrs: { "data-online": online === null ? "unknown" : String(online) } }));
      presenceText = online === true ? ", online" : online === false ? ", offline" : "";
    }
    const preview = previewText(store, conversation);
    const when = lastActivity(conversation);
    const muted = isMuted(conversation.info);
    const quiet = isQuiet(conversation.info);
    // The link's name is its own text, read in this order (the grid places it on screen):
    // who, presence, muted, unread and mention counts, then the preview and the time.
    const state = `${presenceText}${muted ? ", muted" : ""}${unread ? `, ${unread} unread` : ""}${mentions ? `, ${mentions} mentioning you` : ""}`;
    const link = el("a", {
      cls: `conversation-item${unread ? " has-unread" : ""}${quiet ? " quiet" : ""}${muted ? " muted" : ""}`,
      attrs: { href: `/c/${conversation.id}`, "data-conversation": conversation.id,
               "aria-current": conversation.id === activeId ? "page" : false },
    },
    avatar,
    el("span", { cls: "conversation-title", text: title }),
    state ? el("span", { cls: "visually-hidden", text: `${state}.` }) : null,
    el("span", { cls: "conversation-preview", text: preview ? ` ${preview}` : "" }),
    el("time", { cls: "conversation-time", text: shortWhen(when), attrs: { datetime: when || false } }),
    unread ? el("span", { cls: "conversation-badges", attrs: { "aria-hidden": "true" } },
      mentions ? el("span", { cls: "mention-badge", text: `@${mentions > 99 ? "99+" : mentions}`, attrs: { title: `${mentions} unread mentioning you` } }) : null,
      el("span", { cls: "unread-badge", text: unread > 99 ? "99+" : String(unread) })) : null);
    // Mute from the list: one Tab stop with the row's link while it is the current row (app.js).
    const mute = el("button", {
      cls: "mute-toggle", text: muted ? "🔕" : "🔔",
      attrs: { type: "button", tabindex: "-1", "data-mute": conversation.id,
               "aria-label": `${muted ? "Unmute" : "Mute"} ${title}`, title: muted ? "Unmute" : "Mute" },
    });
    return el("li", { cls: "conversation-row" }, link, mute);
  });
  replaceChildren(listEl, items);
  if (focusedId) listEl.querySelector(`[data-conversation="${CSS.escape(focusedId)}"]`)?.focus();
  if (focusedMute) listEl.querySelector(`[data-mute="${CSS.escape(focusedMute)}"]`)?.focus();
}

/** The chat header's line under the title: presence for a direct chat, else who is in it. */
export function subtitleText(store, conversation) {
  const { info } = conversation;
  if (info.kind === "direct") {
    const peer = store.peer(conversation);
    if (!peer) return "";
    const online = store.presenceOf(peer.id);
    if (online === true) return "Online";
    if (online === false) return lastSeen(store.lastSeen.get(peer.id));
    return store.presence.has(peer.id) ? "Presence unknown while you're offline" : `@${peer.username}`;
  }
  const members = `${info.member_count} member${info.member_count === 1 ? "" : "s"}`;
  return info.kind === "channel" ? `${info.public ? "Public" : "Private"} channel · ${members}` : members;
}

function lastActivity(conversation) {
  const last = conversation.lastMessage;
  const at = conversation.info.last_activity_at || conversation.info.created_at;
  return last && last.created_at > at ? last.created_at : at;
}

/** A message's text for a one-line preview; a message of files alone names them. */
function gist(message) {
  const text = (message.body || "").replace(/\s+/g, " ");
  const files = message.attachments || [];
  if (text.trim() || !files.length) return text;
  return `\u{1F4CE} ${files.length === 1 ? files[0].name : `${files.length} files`}`;
}

function previewText(store, conversation) {
  const pending = [...conversation.pending.values()].at(-1);
  if (pending) return `You: ${gist(pending)}`;
  const last = conversation.lastMessage;
  if (!last) return conversation.info.last_seq ? "" : "No messages yet";
  if (last.state === "removed") return "Message removed";
  if (last.state === "deleted") return "Message deleted";
  const who = last.sender.id === store.me.id ? "You: " : conversation.info.kind === "direct" ? "" : `${last.sender.display_name}: `;
  return who + gist(last);
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

/** Say something to screen-reader users without moving their focus (a polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  // A new node per message: screen readers announce additions, not edits of the same text.
  region.append(el("p", { text }));
  while (region.childElementCount > 5) region.firstElementChild.remove();
}
