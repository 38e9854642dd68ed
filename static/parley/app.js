// The chat app: wires the REST API, the socket, the outbox and the store to the page.
import { api, ApiError, inBatches } from "./api.js";
import { DetailsPanel, MuteDialog } from "./convsettings.js";
import { deviceIsKnown, ensureDevice, forgetDevice, setUpPush } from "./device.js";
import { deleteMessage, Editor } from "./edits.js";
import { MentionAutocomplete } from "./mentions.js";
import { Outbox } from "./outbox.js";
import { startPendingCount } from "./pending.js";
import { CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED, ParleySocket } from "./socket.js";
import { installShortcuts } from "./keyboard.js";
import { MessageView } from "./messageview.js";
import { installMessageDialogs, showFlag, showInfo } from "./messagedialogs.js";
import { installNewChatDialogs } from "./newchat.js";
import { EmojiPicker, react } from "./reactions.js";
import { InTabNotifier, isQuiet } from "./notify.js";
import { ReadTracker } from "./reads.js";
import { ReplyComposer } from "./replies.js";
import { RovingFocus } from "./roving.js";
import { Store } from "./store.js";
import { Switcher } from "./switcher.js";
import { AttachmentTray, Lightbox, acceptDrops, acceptPastes } from "./attachments.js";
import {
  announce, renderConnection, renderConversationList, renderTyping, subtitleText, toast,
} from "./ui.js";

const config = JSON.parse(document.getElementById("parley-config").textContent);
const $ = (id) => document.getElementById(id);
const store = new Store(config.me);
const outbox = new Outbox(config.me.id);
const HISTORY_PAGE = 50;
// Opening at the first unread shows this many read messages above the divider, for context.
const CONTEXT_ABOVE = 5;
// Within this many pixels of the top (bottom), the next older (newer) page of history loads.
const OLDER_EDGE_PX = 40;
// Live messages read out one by one up to this many at once; more are summed up.
const ANNOUNCE_AT_MOST = 3;
const RETRYABLE = new Set(["rate_limited", "unavailable"]);

let deviceId = null;
let socket = null;
let connectedBefore = false;
let openId = null;
let lastTypingSent = 0;
const inflight = new Set(); // client_msg_ids sent on the current connection
const drafts = new Map(); // conversation id -> what was typed there and not sent

const tracker = new ReadTracker({
  scroller: $("message-scroller"),
  marks: () => {
    const conversation = store.get(openId);
    if (!conversation?.info.me || !view.ready) return null;
    return { readSeq: conversation.info.me.read_seq, maxSeq: conversation.windowEnd };
  },
  onRead: markRead,
});
const editor = new Editor({
  store,
  maxLength: config.limits.max_body_length,
  windowSeconds: config.limits.edit_window_seconds,
  changed: () => { if (view.ready) { view.render(); editor.focusBox(view.list); } },
  saved: (message) => store.updateMessage(message.conversation, message),
  done: () => $("composer-input").focus(),
});
const view = new MessageView({
  list: $("message-list"),
  scroller: $("message-scroller"),
  store,
  rows: tracker,
  editor,
  actions: {
    info: showInfo, flag: showFlag, retry: retrySend, discard: discardSend,
    reply: (conversation, message) => replies.start(conversation.id, message),
    edit: (conversation, message) => editor.start(message),
    delete: (conversation, message) => deleteMessage({ dialog: $("confirm-dialog"), store, message }),
    react: (conversation, message, anchor) => picker.open(anchor, (emoji) => react({ store, message, emoji, add: true })),
    toggleReaction: (conversation, message, emoji, mine) => react({ store, message, emoji, add: !mine }),
    jump: (conversation, seq) => jumpToMessage(conversation, seq),
    viewImage: (attachment, opener) => lightbox.open(attachment, opener),
  },
});
const lightbox = new Lightbox($("lightbox-dialog"));
const tray = new AttachmentTray({
  tray: $("attachment-tray"), limits: config.limits,
  onChange: ({ message }) => { if (message) announce(message); },
});
const replies = new ReplyComposer({ bar: $("reply-bar"), input: $("composer-input"), meId: config.me.id });
const picker = new EmojiPicker($("emoji-dialog"));
const mentions = new MentionAutocomplete({
  input: $("composer-input"),
  list: $("mention-list"),
  people: () => [...(store.get(openId)?.members?.values() || [])].filter((u) => u.id !== config.me.id),
  everyone: () => (store.get(openId)?.info.member_count ?? Infinity) <= config.limits.mention_all_max_members,
  announce,
});
const listRoving = new RovingFocus($("conversation-list"), { items: "a[data-conversation]" });

// --- rendering, batched per task ------------------------------------------------------------------
const dirty = { list: false, view: false, head: false, typing: false };
let flushQueued = false;

function mark(...parts) {
  for (const part of parts) dirty[part] = true;
  if (flushQueued) return;
  flushQueued = true;
  queueMicrotask(flush);
}

function flush() {
  flushQueued = false;
  if (dirty.list) {
    const list = $("conversation-list");
    renderConversationList(list, store, openId);
    listRoving.refresh(list.querySelector("a:focus") || list.querySelector('[aria-current="page"]'));
    syncMuteButtons();
    $("conversation-list-empty").hidden = store.sortedConversations().length > 0;
    // The title's badge counts what asks for attention: muted and silenced conversations don't.
    const unread = [...store.conversations.values()].filter((c) => !isQuiet(c.info))
      .reduce((sum, c) => sum + store.unread(c), 0);
    document.title = unread ? `(${unread}) Parley` : "Parley";
  }
  const open = store.get(openId);
  if (open && dirty.head) renderHead(open);
  if (open && dirty.view && view.ready) {
    view.render();
    editor.focusBox(view.list);
    renderHistoryEdge(open);
    renderJump();
  }
  if (open && dirty.typing) renderTyping($("typing-indicator"), store.typingNames(open));
  for (const part of Object.keys(dirty)) dirty[part] = false;
}

store.subscribe((change) => {
  const isOpen = change.conversation === openId;
  switch (change.kind) {
    case "conversations": mark("list"); if (isOpen) mark("head"); break;
    case "messages": case "receipts": if (isOpen) mark("view"); break;
    case "members": mark("list"); if (isOpen) { mark("head", "view"); mentions.refresh(); } break;
    case "typing": if (isOpen) mark("typing"); break;
    case "presence": mark("list", "head"); break;
    case "mentions": if (change.stale) recountMentions(change.conversation); break;
  }
});

// unread_mentions the page can't work out itself (store.unreadMentions): asked for again,
// once per conversation at a time.
const recounting = new Set();
// One user's marks in a conversation, from a "receipt" frame or an entry of a "receipts" frame.
function applyReceipt(conversationId, marks) {
  store.setReceipt(conversationId, marks.user, { delivered_seq: marks.delivered_seq, read_seq: marks.read_seq });
  // Read on another device: mentions read there may be ones this page never loaded.
  if (marks.user === config.me.id && store.get(conversationId)?.mentionBase?.count) recountMentions(conversationId);
}

function recountMentions(id) {
  if (recounting.has(id)) return;
  recounting.add(id);
  api.get(`conversations/${id}`).then((info) => store.upsertConversation(info))
    .catch((e) => console.warn("parley:", e))
    .finally(() => recounting.delete(id));
}

function renderHead(conversation) {
  $("chat-title").textContent = store.title(conversation);
  const { info } = conversation;
  $("chat-subtitle").textContent = subtitleText(store, conversation);
  $("chat-topic").textContent = info.topic || "";
  $("chat-topic").hidden = !info.topic;
  const member = Boolean(info.me);
  $("open-details").hidden = !member;
  $("composer").hidden = !member;
  $("join-bar").hidden = member;
}

function renderHistoryEdge(conversation) {
  const known = conversation.oldestLoaded !== null;
  $("load-older").hidden = !known || !conversation.hasOlder;
  $("history-start").hidden = !known || conversation.hasOlder;
  $("load-newer").hidden = !known || !conversation.hasNewer;
}

/** The pill over the bottom of the chat: how many are unread below, or just the way down. */
function renderJump() {
  const conversation = store.get(openId);
  const pill = $("jump-latest");
  const away = Boolean(conversation) && view.ready && (conversation.hasNewer || !view.nearBottom());
  const unread = conversation ? store.unread(conversation) : 0;
  pill.hidden = !away;
  pill.textContent = unread ? `${unread} new message${unread === 1 ? "" : "s"} ↓` : "Jump to latest ↓";
}

// --- connection ------------------------------------------------------------------------------------
let countdown = null;

function showStatus(status) {
  const box = $("connection");
  renderConnection(box, status);
  store.setConnected(status.state === "online");
  $("main").dataset.connection = status.state;
  clearInterval(countdown);
  if (status.state === "reconnecting" && status.retryAt) {
    countdown = setInterval(() => renderConnection(box, status), 250);
  }
}

async function refused(code) {
  if (code === CLOSE_NOT_AUTHENTICATED) {
    try {
      await api.get("me");
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
        return false;
      }
    }
    return true; // the session is fine (e.g. another tab logged out everywhere): come back
  }
  if (code === CLOSE_FORBIDDEN && !(await deviceIsKnown(deviceId).catch(() => true))) {
    // This device was removed ("Log out" in Settings, on another device): this browser's
    // session ends with it, and the next login here registers a new device.
    forgetDevice(config.me.id);
    await api.post("auth/end-session").catch((e) => console.warn("parley:", e));
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
    return false;
  }
  return true;
}

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}/ws/v1/?device=${encodeURIComponent(deviceId)}`;
}

async function onFrame(frame) {
  switch (frame.type) {
    case "ready":
      inflight.clear();
      showDegraded([]); // the server says so again, right after ready, if it still is
      flushOutbox();
      if (connectedBefore && store.get(openId)) {
        // Presence frames sent while we were away are lost: refresh what the open chat shows.
        loadMembers(store.get(openId)).catch((e) => console.warn("parley:", e));
      }
      connectedBefore = true;
      break;
    case "messages":
      try {
        await ensureConversation(frame.conversation);
      } catch {
        return; // no longer ours
      }
      absorb(frame.conversation, frame.messages);
      break;
    case "changes": // edits, deletes, reactions and removals, in order, each once (socket.js)
      try {
        await ensureConversation(frame.conversation);
      } catch {
        return;
      }
      store.applyChanges(frame.conversation, frame.changes);
      break;
    case "send.ok":
      absorb(frame.message.conversation, [frame.message]);
      break;
    case "send.error":
      sendFailed(frame);
      break;
    case "receipt":
      applyReceipt(frame.conversation, frame);
      break;
    case "receipts":
      for (const marks of frame.receipts) applyReceipt(frame.conversation, marks);
      break;
    case "typing":
      store.setTyping(frame.conversation, frame.user);
      break;
    case "presence":
      store.setPresence(frame.user, frame.online);
      break;
    case "conversation.joined":
    case "conversation.updated": {
      const before = store.get(frame.conversation.id)?.info.member_count;
      store.upsertConversation(frame.conversation);
      loadDetails([store.get(frame.conversation.id)]);
      details.refresh(frame.conversation.id, { members: before !== frame.conversation.member_count });
      break;
    }
    case "conversation.left":
      store.removeConversation(frame.conversation.id);
      if (frame.conversation.id === openId) {
        closeConversation();
        toast("You are no longer a member of that conversation.");
      }
      break;
    case "message.removed":
      break; // for clients without the change stream; here the `removed` or `deleted` change says it
    case "degraded":
      showDegraded(frame.shed || []);
      break;
    case "error":
      console.warn("parley: server error frame", frame);
      break;
  }
}

function showDegraded(shed) {
  const banner = $("degraded-banner");
  banner.hidden = !shed.length;
  banner.textContent = shed.length
    ? `Parley is under heavy load. Paused for now: ${shed.join(", ")}. Your messages are still delivered.`
    : "";
}

// --- outbox ----------------------------------------------------------------------------------------
function sendEntry(entry) {
  if (inflight.has(entry.client_msg_id)) return;
  const files = (entry.attachments || []).map((a) => a.id);
  const sent = socket.send({ type: "send", conversation: entry.conversation, client_msg_id: entry.client_msg_id,
                             body: entry.body, reply_to: entry.reply_to ?? undefined,
                             ...(files.length ? { attachments: files } : {}) });
  if (sent) inflight.add(entry.client_msg_id);
}

function flushOutbox() {
  for (const entry of outbox.waiting()) sendEntry(entry);
}

function settle(clientMsgId) {
  inflight.delete(clientMsgId);
  outbox.remove(clientMsgId);
}

/** Messages from the server, by any path: my own among them leave the outbox for good. */
function absorb(conversationId, messages, options) {
  for (const message of messages) {
    if (message.sender.id === config.me.id) settle(message.client_msg_id);
  }
  store.addMessages(conversationId, messages, options);
  if (!options?.history && conversationId === openId) announceArrivals(messages);
  if (!options?.history && store.get(conversationId)) notifier.offer(store.get(conversationId), messages);
}

/** A page fetched over REST: shown, and acked where it continues what the device holds. */
function absorbPage(conversationId, messages) {
  absorb(conversationId, messages, { history: true });
  socket.received(conversationId, messages);
}

/** Read out what others just wrote in the open chat (the list itself is not a live region). */
function announceArrivals(messages) {
  const theirs = messages.filter((m) => m.sender.id !== config.me.id && m.state !== "removed");
  if (!theirs.length || !view.ready) return;
  if (theirs.length > ANNOUNCE_AT_MOST) announce(`${theirs.length} new messages`);
  else {
    for (const m of theirs) {
      const words = m.body || `${m.attachments?.length || 0} file(s)`;
      announce(`${m.sender.display_name}${store.mentionsMe(m) ? " mentioned you" : ""}: ${words}`);
    }
  }
}

function sendFailed(frame) {
  const entry = outbox.get(frame.client_msg_id);
  inflight.delete(frame.client_msg_id);
  if (!entry) return;
  if (RETRYABLE.has(frame.code)) {
    setTimeout(() => { if (outbox.get(entry.client_msg_id)) sendEntry(entry); }, frame.retry_after_ms ?? 1000);
    return;
  }
  const failed = { code: frame.code, detail: frame.detail };
  outbox.update(entry.client_msg_id, { failed });
  store.updatePending(entry.conversation, entry.client_msg_id, { failed });
}

function retrySend(conversation, message) {
  outbox.update(message.client_msg_id, { failed: null });
  store.updatePending(conversation.id, message.client_msg_id, { failed: null });
  const entry = outbox.get(message.client_msg_id);
  if (entry) sendEntry(entry);
}

function discardSend(conversation, message) {
  outbox.remove(message.client_msg_id);
  store.dropPending(conversation.id, message.client_msg_id);
}

// --- conversations -----------------------------------------------------------------------------------
const fetching = new Map();

/** The conversation in the store, fetched first if this page has not seen it yet. */
function ensureConversation(id) {
  if (store.get(id)) return Promise.resolve(store.get(id));
  if (!fetching.has(id)) {
    fetching.set(id, api.get(`conversations/${id}`).then((info) => {
      const conversation = store.upsertConversation(info);
      socket?.followChanges(info.id, info.last_change);
      loadDetails([conversation]);
      return conversation;
    }).finally(() => fetching.delete(id)));
  }
  return fetching.get(id);
}

async function loadMembers(conversation) {
  const asked = Date.now();
  const page = await api.get(`conversations/${conversation.id}/members`, { limit: 200 });
  store.setMembers(conversation.id, page.results.map((m) => m.user));
  // A presence snapshot (null where the server sends no presence): no waiting for a frame.
  for (const member of page.results) {
    if (typeof member.online === "boolean" && member.user.id !== config.me.id) {
      store.setPresence(member.user.id, member.online, asked, member.last_seen_at ?? null);
    }
  }
}

async function loadPreview(conversation) {
  if (conversation.lastMessage || !conversation.info.last_seq) return;
  const page = await api.get(`conversations/${conversation.id}/messages`, { before_seq: conversation.info.last_seq + 1, limit: 1 });
  absorbPage(conversation.id, page.messages);
}

// The list comes a page at a time (most recent first); older conversations load on scrolling
// down to the "Load more" button. Conversations on pages not yet loaded still show up when
// something happens in them (their frames fetch them).
const listPages = { offset: 0, more: true, loading: null, started: false };

function loadConversationPage() {
  if (!listPages.more) return Promise.resolve([]);
  listPages.loading ??= api.get("conversations", { offset: listPages.offset || undefined }).then((page) => {
    // No cursors from the list: the socket's hello resumes each conversation where this
    // device's acks left it, so what arrived while it was away comes down the stream and is
    // acked as delivered on arrival, before anyone opens the chat.
    const loaded = page.results.map((info) => store.upsertConversation(info));
    // Each conversation's change stream resumes where the copy read after this list stands.
    for (const info of page.results) socket?.followChanges(info.id, info.last_change);
    listPages.offset += page.results.length;
    listPages.more = Boolean(page.next) && page.results.length > 0;
    $("load-more-conversations").hidden = !listPages.more;
    if (listPages.started) loadDetails(loaded);
    return loaded;
  }).finally(() => { listPages.loading = null; });
  return listPages.loading;
}

function loadMoreConversations() {
  loadConversationPage().catch((error) => toast(`Could not load more conversations: ${error.message}`));
}

/** Names for direct chats and untitled groups, and last-message previews, a few at a time. */
function loadDetails(conversations) {
  const needMembers = conversations.filter((c) => !c.members && (c.info.kind === "direct" || !c.info.title));
  inBatches(needMembers, 4, loadMembers);
  inBatches(conversations, 4, loadPreview);
}

async function loadReceipts(conversation) {
  if (conversation.info.member_count > config.limits.receipt_broadcast_max_members || !conversation.info.me) return;
  const { members } = await api.get(`conversations/${conversation.id}/receipts`);
  for (const marks of members) {
    store.setReceipt(conversation.id, marks.user, { delivered_seq: marks.delivered_seq, read_seq: marks.read_seq });
  }
}

async function loadLatest(conversation) {
  const before = Math.max(conversation.lastSeq, socket.cursor(conversation.id)) + 1;
  const page = await api.get(`conversations/${conversation.id}/messages`, { before_seq: before, limit: HISTORY_PAGE });
  store.setHistory(conversation.id, page.messages[0]?.seq ?? before, page.has_more);
  absorbPage(conversation.id, page.messages);
}

/** A page starting a little above `seq` (the first unread, or a linked message). */
async function loadAround(conversation, seq) {
  const after = Math.max(0, seq - 1 - CONTEXT_ABOVE);
  const page = await api.get(`conversations/${conversation.id}/messages`, { after_seq: after, limit: HISTORY_PAGE });
  const first = page.messages[0]?.seq ?? seq;
  store.setHistory(conversation.id, first, first > 1);
  absorbPage(conversation.id, page.messages);
}

let loadingNewer = false;
async function loadNewer() {
  const conversation = store.get(openId);
  if (!conversation || loadingNewer || !view.ready || !conversation.hasNewer) return;
  loadingNewer = true;
  try {
    const page = await api.get(`conversations/${conversation.id}/messages`,
                               { after_seq: conversation.windowEnd, limit: HISTORY_PAGE });
    absorbPage(conversation.id, page.messages);
  } catch (error) {
    toast(error.message);
  } finally {
    loadingNewer = false;
  }
}

/** The "N new messages" pill: to the latest message, fetching it if the window is further up. */
async function jumpToLatest() {
  const conversation = store.get(openId);
  if (!conversation) return;
  if (conversation.hasNewer) {
    try {
      await loadLatest(conversation);
    } catch (error) {
      toast(error.message);
      return;
    }
  }
  view.render({ toBottom: true });
  renderHistoryEdge(conversation);
  renderJump();
  if (conversation.info.me) $("composer-input").focus();
  else view.roving.focus(view.roving.items().at(-1));
}

let loadingOlder = null; // the page of older history on its way
function loadOlder() {
  const conversation = store.get(openId);
  if (!conversation || !conversation.hasOlder || conversation.oldestLoaded === null) return Promise.resolve();
  loadingOlder ??= fetchOlder(conversation).finally(() => { loadingOlder = null; });
  return loadingOlder;
}

async function fetchOlder(conversation) {
  try {
    const page = await api.get(`conversations/${conversation.id}/messages`,
                               { before_seq: conversation.oldestLoaded, limit: HISTORY_PAGE });
    if (conversation.id !== openId) return;
    store.setHistory(conversation.id, page.messages[0]?.seq ?? conversation.oldestLoaded, page.has_more);
    absorbPage(conversation.id, page.messages);
    view.render({ keepPosition: true });
    renderHistoryEdge(conversation);
  } catch (error) {
    toast(error.message);
  }
}

/** A reply's quote, followed: older pages load until the original is shown, then it is focused. */
async function jumpToMessage(conversation, seq) {
  while (!view.rowOf(seq) && conversation.id === openId && conversation.hasOlder && conversation.oldestLoaded > seq) {
    const before = conversation.oldestLoaded;
    await loadOlder();
    if (conversation.oldestLoaded === before) break; // the page failed: said so already
  }
  const row = view.rowOf(seq);
  if (!row || conversation.id !== openId) return;
  view.highlight = seq;
  view.render();
  const highlighted = view.rowOf(seq);
  view.roving.focus(highlighted);
  highlighted.scrollIntoView({ block: "center" });
}

let opening = 0; // the latest open: a slower earlier one gives way to it

/** Does the history in the store already show `seq` with its context above? */
function windowCovers(conversation, seq) {
  return conversation.oldestLoaded !== null && conversation.oldestLoaded <= Math.max(1, seq - CONTEXT_ABOVE)
    && conversation.windowEnd >= seq;
}

/**
 * Open a conversation: at `at` (a linked message), else at its first unread with the divider
 * above it, else at the latest message. Nothing is marked read here: the read tracker does
 * that for the rows that come on screen.
 */
async function openConversation(id, { push = true, at = null, focusComposer = true } = {}) {
  const url = at ? `/c/${id}?at=${at}` : `/c/${id}`;
  if (push && window.location.pathname + window.location.search !== url) history.pushState({ id }, "", url);
  const token = ++opening;
  let conversation;
  try {
    conversation = await ensureConversation(id);
  } catch (error) {
    toast(error.status === 404 ? "That conversation doesn't exist, or you're not in it." : error.message);
    closeConversation({ push: true });
    return;
  }
  if (token !== opening) return;
  keepDraft();
  if (openId !== id) editor.editing = null;
  openId = id;
  replies.show(id);
  mentions.close();
  $("chat-empty").hidden = true;
  $("chat-open").hidden = false;
  $("main").dataset.view = "chat";
  tracker.reset();
  view.open(conversation, { highlight: at });
  $("composer-input").value = drafts.get(id) || "";
  autosize($("composer-input"));
  tray.reset(id);
  renderTyping($("typing-indicator"), []);
  mark("list", "head");
  const me = conversation.info.me;
  const firstUnread = me && conversation.lastSeq > me.read_seq ? me.read_seq + 1 : null;
  const anchor = at ?? firstUnread;
  try {
    if (anchor) {
      if (!windowCovers(conversation, anchor)) await loadAround(conversation, anchor);
    } else if (conversation.oldestLoaded === null || conversation.hasNewer) {
      await loadLatest(conversation);
    }
  } catch (error) {
    toast(error.message);
  }
  if (token !== opening || openId !== id) return;
  view.ready = true;
  view.render();
  const target = at ? view.rowOf(at) : firstUnread ? view.dividerNode() : null;
  if (target) view.scrollToRow(target);
  else view.scrollToBottom();
  view.tailShown = view.atTail() && view.nearBottom();
  renderHistoryEdge(conversation);
  renderJump();
  if (!conversation.members) loadMembers(conversation).catch((e) => console.warn("parley:", e));
  loadReceipts(conversation).catch((e) => console.warn("parley:", e));
  const unread = store.unread(conversation);
  announce(`${store.title(conversation)}${unread ? `, ${unread} unread, from the first unread message` : ""}`);
  if (at && view.rowOf(at)) view.roving.focus(view.rowOf(at));
  else if (focusComposer && conversation.info.me && window.matchMedia("(hover: hover)").matches) $("composer-input").focus();
}

function closeConversation({ push = false } = {}) {
  const wasOpen = openId;
  keepDraft();
  editor.editing = null;
  openId = null;
  replies.show(null);
  opening += 1;
  tracker.reset();
  view.conversation = null;
  view.ready = false;
  $("chat-empty").hidden = false;
  $("chat-open").hidden = true;
  $("main").dataset.view = "list";
  $("jump-latest").hidden = true;
  if (push && window.location.pathname !== "/") history.pushState({}, "", "/");
  mark("list");
  // Back to where the person came from in the list (the phone's back button, Alt+Left).
  if (wasOpen && push) {
    queueMicrotask(() => $("conversation-list").querySelector(`[data-conversation="${wasOpen}"]`)?.focus());
  }
}

function keepDraft() {
  if (openId === null) return;
  const text = $("composer-input").value;
  if (text) drafts.set(openId, text);
  else drafts.delete(openId);
}

function routeFromLocation() {
  const match = window.location.pathname.match(/^\/c\/(\d+)\/?$/);
  const at = Number(new URLSearchParams(window.location.search).get("at")) || null;
  if (match) openConversation(Number(match[1]), { push: false, at });
  else closeConversation();
}

/** The read watermark the tracker found: only rows that were on screen got it this far. */
function markRead(seq) {
  const conversation = store.get(openId);
  if (!conversation?.info.me || seq <= conversation.info.me.read_seq) return;
  if (!socket.send({ type: "read", conversation: conversation.id, seq })) {
    api.post(`conversations/${conversation.id}/read`, { seq }).catch((e) => console.warn("parley:", e));
  }
  store.setReceipt(conversation.id, config.me.id, { delivered_seq: seq, read_seq: seq });
}

/** Alt+Up / Alt+Down: the conversation above or below the open one in the list. */
function moveConversation(delta) {
  const list = store.sortedConversations();
  if (!list.length) return;
  const at = list.findIndex((c) => c.id === openId);
  const next = at === -1 ? (delta > 0 ? list[0] : list.at(-1)) : list[at + delta];
  if (next) openConversation(next.id);
}

// --- composer ---------------------------------------------------------------------------------------
function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight + 2, 160)}px`;
}

function submitMessage(event) {
  event.preventDefault();
  const input = $("composer-input");
  const body = input.value;
  const files = tray.ready();
  if ((!body.trim() && !files.length) || !openId) return;
  if (tray.busy()) {
    toast("Wait for your files to finish uploading.");
    return;
  }
  if (body.length > config.limits.max_body_length) {
    toast(`Messages can be at most ${config.limits.max_body_length} characters.`);
    return;
  }
  const reply = replies.current(openId);
  const entry = outbox.add({ conversation: openId, body: body.trim() ? body : "", reply_to: reply?.id ?? null, reply,
                             attachments: files });
  store.addPending(entry);
  tray.sent();
  replies.cancel(openId);
  input.value = "";
  drafts.delete(openId);
  autosize(input);
  // What you send goes at the end: a window opened further up jumps to the latest first.
  if (store.get(openId)?.hasNewer) jumpToLatest();
  else view.render({ toBottom: true });
  sendEntry(entry);
}

$("composer").addEventListener("submit", submitMessage);
$("attach-button").addEventListener("click", () => $("attach-input").click());
$("attach-input").addEventListener("change", (event) => {
  tray.add(event.target.files);
  event.target.value = ""; // the same file can be picked again
  $("composer-input").focus();
});
acceptPastes($("composer-input"), (files) => tray.add(files));
acceptDrops($("chat-open"), $("drop-hint"), (files) => { if (!$("composer").hidden) tray.add(files); });
$("composer-input").addEventListener("keydown", (event) => {
  if (mentions.handleKey(event)) return; // the @-list is open: its keys first
  const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !event.isComposing;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  } else if (event.key === "ArrowUp" && plain && !event.target.value) {
    // Up in an empty composer edits my last message, as in most chat apps.
    const conversation = store.get(openId);
    const last = conversation && store.lastEditable(conversation, (m) => editor.editable(m));
    if (last) {
      event.preventDefault();
      editor.start(last);
    }
  } else if (event.key === "Escape" && plain && replies.current(openId)) {
    event.preventDefault();
    replies.cancel(openId);
  }
});
$("composer-input").addEventListener("input", (event) => {
  autosize(event.target);
  const now = Date.now();
  if (openId && event.target.value && now - lastTypingSent > config.limits.typing_throttle_ms) {
    if (socket.send({ type: "typing", conversation: openId })) lastTypingSent = now;
  }
});

// --- dialogs -----------------------------------------------------------------------------------------
const newChat = installNewChatDialogs({ store, openConversation, loadMembers });
installMessageDialogs();

// --- navigation and focus ---------------------------------------------------------------------------------
$("conversation-list").addEventListener("click", (event) => {
  const mute = event.target.closest("button[data-mute]");
  if (mute) {
    const conversation = store.get(Number(mute.dataset.mute));
    if (conversation) muteDialog.toggle(conversation);
    return;
  }
  const link = event.target.closest("a[data-conversation]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  openConversation(Number(link.dataset.conversation));
});
$("back-to-list").addEventListener("click", () => closeConversation({ push: true }));
$("join-channel").addEventListener("click", () => {
  const conversation = store.get(openId);
  if (conversation) newChat.joinChannel(conversation.info);
});
$("load-older").addEventListener("click", loadOlder);
$("load-newer").addEventListener("click", loadNewer);
$("jump-latest").addEventListener("click", jumpToLatest);
$("load-more-conversations").addEventListener("click", loadMoreConversations);
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMoreConversations();
}, { root: $("conversation-scroller") }).observe($("load-more-conversations"));
$("reconnect-now").addEventListener("click", () => socket.connectNow());
// Logging out closes this user's sockets (4401). This page is leaving for the login page
// anyway: it must not race the logout's redirect with one of its own (to /login?next=...).
document.querySelector('form[action="/logout"]')?.addEventListener("submit", () => socket?.stop());
window.addEventListener("popstate", routeFromLocation);
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadOlder();
}, { root: $("message-scroller") }).observe($("load-older"));
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadNewer();
}, { root: $("message-scroller") }).observe($("load-newer"));
// The observer reports changes between frames: a scroll back to the top within the frame in
// which an older page was inserted (and the position kept) looks like no change to it. The
// scroll position itself never misses one.
$("message-scroller").addEventListener("scroll", (event) => {
  const box = event.currentTarget;
  if (box.scrollTop < OLDER_EDGE_PX) loadOlder();
  if (box.scrollHeight - box.scrollTop - box.clientHeight < OLDER_EDGE_PX) loadNewer();
  renderJump();
});

const switcher = new Switcher({
  dialog: $("switcher-dialog"),
  input: $("switcher-input"),
  list: $("switcher-results"),
  conversations: () => store.sortedConversations().map((c) => ({ id: c.id, title: store.title(c), unread: store.unread(c) })),
  choose: (id) => openConversation(id),
  chooseMessage: (id, seq) => openConversation(id, { at: seq }),
  titleOf: (id) => (store.get(id) ? store.title(store.get(id)) : null),
});
const details = new DetailsPanel({
  store,
  say: toast,
  left: (conversation) => {
    store.removeConversation(conversation.id);
    if (conversation.id === openId) closeConversation({ push: true });
    toast(`You left ${store.title(conversation)}.`);
  },
});
const muteDialog = new MuteDialog({ store, say: toast });
const notifier = new InTabNotifier({
  me: config.me,
  titleOf: (conversation) => store.title(conversation),
  open: (id, seq) => openConversation(id, { at: seq }),
});
$("open-details").addEventListener("click", () => {
  const conversation = store.get(openId);
  if (conversation?.info.me) details.show(conversation);
});

/** A row's mute button is reachable with Tab from its link while that row is the list's Tab stop. */
function syncMuteButtons() {
  for (const button of $("conversation-list").querySelectorAll("button[data-mute]")) {
    button.tabIndex = button.previousElementSibling?.tabIndex === 0 ? 0 : -1;
  }
}
$("conversation-list").addEventListener("focusin", () => queueMicrotask(syncMuteButtons));
$("open-switcher").addEventListener("click", () => switcher.show());
$("show-shortcuts")?.addEventListener("click", () => $("shortcuts-dialog").showModal());
installShortcuts({
  switcher: () => switcher.show(),
  move: moveConversation,
  toComposer: () => {
    const input = $("composer-input");
    if (!openId || input.closest("[hidden]") || document.activeElement === input) return false;
    input.focus();
    return true;
  },
  help: () => $("shortcuts-dialog").showModal(),
});

// --- start ---------------------------------------------------------------------------------------------------
async function start() {
  try {
    deviceId = await ensureDevice(config.me.id);
  } catch (error) {
    showStatus({ state: "offline" });
    toast(`This browser could not be registered: ${error.message}`);
    return;
  }
  socket = new ParleySocket({ url: socketUrl, onFrame, onStatus: showStatus, onRefused: refused });
  try {
    await loadConversationPage();
  } catch (error) {
    toast(`Could not load your conversations: ${error.message}`);
  }
  for (const entry of outbox.all()) {
    await ensureConversation(entry.conversation).then(
      () => store.addPending(entry),
      () => outbox.remove(entry.client_msg_id), // gone, or no longer ours: nothing to send it to
    );
  }
  mark("list");
  socket.start();
  loadDetails([...store.conversations.values()]);
  listPages.started = true;
  routeFromLocation();
  startPendingCount(config);
  const pushResult = (error) => toast(error ? `Notifications could not be turned on: ${error.message}` : "Notifications are on.");
  setUpPush({ button: $("enable-push"), deviceId, push: config.push, onEnabled: pushResult })
    .catch((e) => console.warn("parley: push", e));
}

start();
