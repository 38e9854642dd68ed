// The client's state: conversations, their messages by seq, messages waiting in the outbox,
// members, receipt watermarks, typing and presence. Every change notifies the subscribers
// with what changed, so the UI redraws only that part.
//
// Messages are kept by seq, so the same message arriving twice (a REST page overlapping a
// replay page, or the stream) is stored once. A pending message is keyed by its
// client_msg_id and gives way to the stored one with the same key. Of two copies of one
// message the one with the higher `version` (the change that last changed it) wins, whichever
// arrives last: a page read before an edit may reach the page after the edit's change frame.

const TYPING_SHOWN_MS = 5000;

export class Conversation {
  constructor(info) {
    this.id = info.id;
    this.info = info;
    this.messages = new Map(); // seq -> message
    this.maxSeq = 0; // highest seq in messages
    this.pending = new Map(); // client_msg_id -> outbox entry (maybe with .failed)
    this.members = null; // Map user id -> user, once fetched
    this.receipts = new Map(); // user id -> {delivered_seq, read_seq}
    this.typing = new Map(); // user id -> time it stops showing
    this.oldestLoaded = null; // lowest seq of the history shown; null until it is fetched
    this.hasOlder = true;
    this.latest = new Map(); // message id -> a changed copy of a message not in `messages` (yet)
    this.mentions = new Map(); // seq -> whether that message (as last seen here) mentions me
    this.mentionBase = null; // {count, lastSeq, readSeq}: unread_mentions as the server last counted it
    this.noteMentionBase(info);
  }

  /** The server's unread_mentions, with the marks it was counted at (store.unreadMentions). */
  noteMentionBase(info) {
    const count = info.me?.unread_mentions;
    if (typeof count !== "number") return;
    if (this.mentionBase && (info.last_seq || 0) < this.mentionBase.lastSeq) return; // an older count
    this.mentionBase = { count, lastSeq: info.last_seq || 0, readSeq: info.me.read_seq };
  }

  /** A message of this conversation by id (the copy a reply quotes), if this page has it. */
  messageById(id, seq) {
    const held = this.messages.get(seq);
    if (held?.id === id) return this.latest.get(id)?.version > (held.version ?? 0) ? this.latest.get(id) : held;
    return this.latest.get(id) || null;
  }

  get lastSeq() {
    return Math.max(this.info.last_seq || 0, this.maxSeq);
  }

  get lastMessage() {
    return this.messages.get(this.maxSeq) || null;
  }

  /** The highest seq of the history shown: the stored run that goes on from `oldestLoaded`. */
  get windowEnd() {
    if (this.oldestLoaded === null) return 0;
    let seq = this.oldestLoaded - 1;
    while (this.messages.has(seq + 1)) seq += 1;
    return seq;
  }

  /** Newer messages exist than the history shown (it was opened further up, at the first unread). */
  get hasNewer() {
    return this.oldestLoaded !== null && this.windowEnd < this.lastSeq;
  }
}

export class Store {
  constructor(me) {
    this.me = me;
    this.conversations = new Map();
    this.presence = new Map(); // user id -> online
    this.presenceAt = new Map(); // user id -> when what we know was true (ms)
    this.lastSeen = new Map(); // user id -> ISO time their last socket closed (when known)
    this.connected = false; // while we are not, what we know of others' presence may be stale
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(change) {
    for (const listener of this.listeners) listener(change);
  }

  get(id) {
    return this.conversations.get(id);
  }

  // --- conversations -------------------------------------------------------------------------
  upsertConversation(info) {
    let conversation = this.conversations.get(info.id);
    if (conversation) {
      const me = info.me && conversation.info.me ? this.mergeMarks(conversation.info.me, info.me) : info.me;
      conversation.info = { ...conversation.info, ...info, me,
                            last_seq: Math.max(conversation.info.last_seq || 0, info.last_seq || 0),
                            last_change: Math.max(conversation.info.last_change || 0, info.last_change || 0) };
      conversation.noteMentionBase(info);
    } else {
      conversation = new Conversation(info);
      this.conversations.set(info.id, conversation);
    }
    this.emit({ kind: "conversations", conversation: info.id });
    return conversation;
  }

  removeConversation(id) {
    if (this.conversations.delete(id)) this.emit({ kind: "conversations", conversation: id, removed: true });
  }

  mergeMarks(current, incoming) {
    // Watermarks only move forward (CONTRACT, "Semantics" 5), whatever order updates arrive in.
    return { ...current, ...incoming,
             delivered_seq: Math.max(current.delivered_seq, incoming.delivered_seq),
             read_seq: Math.max(current.read_seq, incoming.read_seq) };
  }

  /** The conversations I am in, most recent activity first, counting messages still in the outbox. */
  sortedConversations() {
    const activity = (c) => {
      let at = c.info.last_activity_at || c.info.created_at || "";
      const last = c.lastMessage;
      if (last && last.created_at > at) at = last.created_at;
      for (const entry of c.pending.values()) if (entry.created_at > at) at = entry.created_at;
      return at;
    };
    const mine = [...this.conversations.values()].filter((c) => c.info.me);
    return mine.sort((a, b) => (activity(b) > activity(a) ? 1 : activity(b) < activity(a) ? -1 : b.id - a.id));
  }

  unread(conversation) {
    const me = conversation.info.me;
    return me ? Math.max(0, conversation.lastSeq - me.read_seq) : 0;
  }

  /**
   * Unread messages that mention me, counted from seqs (never a counter that could drift): the
   * server's count at the marks it was taken at, less those read since (they were on screen,
   * so this page has them), plus those that arrived after it and are unread. When that can't
   * be known here (a read on another device, an edit that added or took a mention within the
   * counted range), the store asks for a new count (a "mentions" event with `stale`).
   */
  unreadMentions(conversation) {
    const me = conversation.info.me;
    if (!me) return 0;
    const base = conversation.mentionBase || { count: 0, lastSeq: 0, readSeq: 0 };
    let count = base.count;
    for (const [seq, mentioned] of conversation.mentions) {
      if (!mentioned) continue;
      if (seq > base.lastSeq) count += seq > me.read_seq ? 1 : 0;
      else if (seq > base.readSeq && seq <= me.read_seq) count -= 1;
    }
    return Math.max(0, count);
  }

  /** Does this message mention me (by name, or @all)? My own never count. */
  mentionsMe(message) {
    return message.sender.id !== this.me.id && message.state === "visible"
      && Array.isArray(message.mentions) && message.mentions.includes(this.me.id);
  }

  /**
   * Note whether a message mentions me. True when the server's count may now be off: within the
   * range it counted, a copy said otherwise before, or a change brought a message this page had
   * not seen, which may have gained or lost a mention since the count.
   */
  trackMention(conversation, message, { fromChange = false } = {}) {
    const had = conversation.mentions.get(message.seq);
    const has = this.mentionsMe(message);
    conversation.mentions.set(message.seq, has);
    const base = conversation.mentionBase;
    if (!base || message.seq <= base.readSeq || message.seq > base.lastSeq) return false;
    if (had !== undefined) return had !== has;
    return fromChange && (has || base.count > 0);
  }

  peer(conversation) {
    if (conversation.info.kind !== "direct" || !conversation.members) return null;
    return [...conversation.members.values()].find((u) => u.id !== this.me.id) || null;
  }

  title(conversation) {
    const { info } = conversation;
    if (info.title) return info.title;
    if (info.kind === "direct") return this.peer(conversation)?.display_name || "Direct chat";
    if (conversation.members) {
      const names = [...conversation.members.values()].filter((u) => u.id !== this.me.id).map((u) => u.display_name);
      if (names.length) return names.slice(0, 3).join(", ") + (names.length > 3 ? ` +${names.length - 3}` : "");
    }
    return info.kind === "channel" ? "Channel" : "Group";
  }

  name(conversation, userId) {
    if (userId === this.me.id) return "You";
    return conversation?.members?.get(userId)?.display_name || "Someone";
  }

  // --- messages -------------------------------------------------------------------------------
  addMessages(conversationId, messages, { history = false } = {}) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation || !messages.length) return;
    let stale = false;
    for (const message of messages) {
      stale = this.keepNewest(conversation, message) || stale;
      conversation.maxSeq = Math.max(conversation.maxSeq, message.seq);
      if (message.sender.id === this.me.id) {
        conversation.pending.delete(message.client_msg_id);
        // Sending raised our own marks to this seq (CONTRACT, "send").
        if (conversation.info.me) {
          conversation.info.me = this.mergeMarks(conversation.info.me,
                                                 { delivered_seq: message.seq, read_seq: message.seq });
        }
      }
      if (!history) conversation.typing.delete(message.sender.id); // the message they were typing is here
      if (!history && conversation.members && !conversation.members.has(message.sender.id)) {
        conversation.members.set(message.sender.id, message.sender);
      }
    }
    this.emit({ kind: "messages", conversation: conversationId, history });
    this.emit({ kind: "conversations", conversation: conversationId });
    if (!history) this.emit({ kind: "typing", conversation: conversationId });
    if (stale) this.emit({ kind: "mentions", conversation: conversationId, stale: true });
  }

  /** Put a message in `messages`, unless the page holds a newer copy of it; see `trackMention`. */
  keepNewest(conversation, message) {
    const held = conversation.messages.get(message.seq);
    const changed = conversation.latest.get(message.id);
    let best = message;
    if (held?.id === message.id && (held.version ?? 0) > (message.version ?? 0)) best = held;
    if (changed && (changed.version ?? 0) > (best.version ?? 0)) best = changed;
    conversation.latest.delete(message.id);
    conversation.messages.set(message.seq, best);
    return this.trackMention(conversation, best);
  }

  /**
   * Change records (edits, deletes, reactions, removals), each carrying the message as it now
   * is: it replaces the copy held by id when its version is newer, so applying one twice, or
   * after a newer page, changes nothing. A message not loaded yet is kept aside for when it is.
   */
  applyChanges(conversationId, records) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation || !records.length) return;
    let stale = false;
    for (const { message, change } of records) {
      conversation.info.last_change = Math.max(conversation.info.last_change || 0, change);
      const held = conversation.messageById(message.id, message.seq);
      if (held && (held.version ?? 0) >= (message.version ?? 0)) continue;
      if (conversation.messages.get(message.seq)?.id === message.id) conversation.messages.set(message.seq, message);
      else conversation.latest.set(message.id, message);
      stale = this.trackMention(conversation, message, { fromChange: true }) || stale;
    }
    this.emit({ kind: "messages", conversation: conversationId, changed: true });
    this.emit({ kind: "conversations", conversation: conversationId });
    if (stale) this.emit({ kind: "mentions", conversation: conversationId, stale: true });
  }

  /** A message as a REST call just answered it (an edit, a delete, a reaction): the same rule. */
  updateMessage(conversationId, message) {
    this.applyChanges(conversationId, [{ message, change: 0 }]);
  }

  /** My last message here that I may still edit, newest first (the Up arrow in the composer). */
  lastEditable(conversation, editable) {
    for (let seq = conversation.windowEnd; seq >= (conversation.oldestLoaded ?? 1); seq -= 1) {
      const message = conversation.messages.get(seq);
      if (message?.sender.id === this.me.id && editable(message)) return message;
    }
    return null;
  }

  setHistory(conversationId, oldestSeq, hasOlder) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation) return;
    conversation.oldestLoaded = oldestSeq;
    conversation.hasOlder = hasOlder;
  }

  addPending(entry) {
    const conversation = this.conversations.get(entry.conversation);
    if (!conversation) return;
    // A confirmed copy may already be here (the stream beat the outbox): nothing to show twice.
    for (const message of conversation.messages.values()) {
      if (message.sender.id === this.me.id && message.client_msg_id === entry.client_msg_id) return;
    }
    conversation.pending.set(entry.client_msg_id, entry);
    this.emit({ kind: "messages", conversation: entry.conversation, own: true });
    this.emit({ kind: "conversations", conversation: entry.conversation });
  }

  updatePending(conversationId, clientMsgId, changes) {
    const conversation = this.conversations.get(conversationId);
    const entry = conversation?.pending.get(clientMsgId);
    if (!entry) return;
    conversation.pending.set(clientMsgId, { ...entry, ...changes });
    this.emit({ kind: "messages", conversation: conversationId });
  }

  dropPending(conversationId, clientMsgId) {
    const conversation = this.conversations.get(conversationId);
    if (conversation?.pending.delete(clientMsgId)) {
      this.emit({ kind: "messages", conversation: conversationId });
      this.emit({ kind: "conversations", conversation: conversationId });
    }
  }

  // --- receipts, members, typing, presence ------------------------------------------------------
  setReceipt(conversationId, userId, marks) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation) return;
    if (userId === this.me.id && conversation.info.me) {
      conversation.info.me = this.mergeMarks(conversation.info.me, marks);
      this.emit({ kind: "conversations", conversation: conversationId });
    }
    const current = conversation.receipts.get(userId);
    conversation.receipts.set(userId, current ? this.mergeMarks(current, marks) : { ...marks });
    this.emit({ kind: "receipts", conversation: conversationId });
  }

  setMembers(conversationId, users) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation) return;
    conversation.members = new Map(users.map((u) => [u.id, u]));
    this.emit({ kind: "conversations", conversation: conversationId });
    this.emit({ kind: "members", conversation: conversationId });
  }

  setTyping(conversationId, userId) {
    const conversation = this.conversations.get(conversationId);
    if (!conversation) return;
    conversation.typing.set(userId, Date.now() + TYPING_SHOWN_MS);
    this.setPresence(userId, true); // typing is proof of life
    this.emit({ kind: "typing", conversation: conversationId });
    setTimeout(() => this.emit({ kind: "typing", conversation: conversationId }), TYPING_SHOWN_MS + 50);
  }

  typingNames(conversation) {
    const now = Date.now();
    const names = [];
    for (const [userId, until] of conversation.typing) {
      if (until > now) names.push(this.name(conversation, userId));
      else conversation.typing.delete(userId);
    }
    return names;
  }

  /**
   * A user's presence, as of `asOf` (ms): a frame is news now; a snapshot from the members
   * endpoint is as old as its request, so a frame that came in meanwhile wins over it.
   */
  setPresence(userId, online, asOf = Date.now(), lastSeen = undefined) {
    if (asOf < (this.presenceAt.get(userId) ?? -Infinity)) return;
    this.presenceAt.set(userId, asOf);
    // A presence frame saying "offline" is news of the moment their last socket closed.
    const seen = lastSeen !== undefined ? lastSeen : online ? null : new Date(asOf).toISOString();
    const seenChanged = !online && seen && seen !== this.lastSeen.get(userId);
    if (seenChanged) this.lastSeen.set(userId, seen);
    if (this.presence.get(userId) === online && !seenChanged) return;
    this.presence.set(userId, online);
    this.emit({ kind: "presence", user: userId });
  }

  /** Our own connection changed: others' presence is shown as known, or as unknown. */
  setConnected(connected) {
    if (this.connected === connected) return;
    this.connected = connected;
    this.emit({ kind: "presence" });
  }

  /** A user's presence as the app may honestly show it: true, false, or null (unknown). */
  presenceOf(userId) {
    if (!this.connected || !this.presence.has(userId)) return null;
    return this.presence.get(userId);
  }

  /**
   * The tick of a message I sent: pending (no seq yet) -> sent (stored) -> delivered (every
   * other member's delivered_seq has reached it) -> read (every other member's read_seq has).
   */
  tickState(conversation, message) {
    if (!message.seq) return message.failed ? "failed" : "pending";
    const others = [...conversation.receipts].filter(([userId]) => userId !== this.me.id).map(([, marks]) => marks);
    if (!others.length) return "sent";
    if (others.every((m) => m.read_seq >= message.seq)) return "read";
    if (others.every((m) => m.delivered_seq >= message.seq)) return "delivered";
    return "sent";
  }
}
