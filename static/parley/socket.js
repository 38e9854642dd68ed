// The WebSocket protocol (CONTRACT, "WebSocket"), as the Python reference client
// messaging/client.py speaks it: hello with cursors, replay pulls while has_more, cumulative
// acks, dedupe by seq, and reconnects with exponential backoff and jitter.
//
// Cursors: per conversation, the highest seq this page holds with everything before it. A
// message at or below the cursor is a duplicate (a replay overlapping what arrived live);
// one past a gap is not taken, and the gap is pulled with `replay` instead.
//
// Change cursors (CONTRACT v1.1, "The change stream") work the same way over change numbers:
// the highest change this page has applied with every one before it, primed from the
// conversation list's `last_change`, sent in hello's `changes` so a reconnect replays every
// edit, delete and reaction made meanwhile, and pulled with `replay_changes` past a gap.

export const State = Object.freeze({
  CONNECTING: "connecting",
  ONLINE: "online",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
});

const PING_EVERY_MS = 25_000;
// Acks are cumulative (CONTRACT: ack N means everything up to N), so one per conversation per
// ACK_EVERY_MS answers every frame that arrived in between: far fewer frames for the server to
// read when messages come fast, at most this much later for the sender's ticks.
export const ACK_EVERY_MS = 100;
const PONG_WITHIN_MS = 10_000;
// Close codes (CONTRACT): the server refused us; the caller decides what to do next.
export const CLOSE_NOT_AUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_RATE_LIMITED = 4429;

export class ParleySocket {
  /**
   * @param {object} options
   * @param {() => string} options.url            the /ws/v1/ URL for this device
   * @param {(frame: object) => void} options.onFrame   fresh frames only (messages deduped)
   * @param {(status: {state: string, retryAt?: number}) => void} options.onStatus
   * @param {(code: number) => Promise<boolean>} options.onRefused  true: try again (with backoff)
   */
  constructor({ url, onFrame, onStatus, onRefused, backoffBaseMs = 1000, backoffCapMs = 30_000 }) {
    Object.assign(this, { url, onFrame, onStatus, onRefused, backoffBaseMs, backoffCapMs });
    this.cursors = new Map();
    this.ws = null;
    this.ready = false;
    this.attempt = 0;
    this.stopped = false;
    this.timers = {};
    this.status = { state: State.CONNECTING };
    this.replayAsked = new Map(); // conversation -> after_seq of the pull in flight
    this.acked = new Map(); // conversation -> highest seq acked on some connection
    this.changeCursors = new Map(); // conversation -> highest change applied, with all before it
    this.changesAsked = new Map(); // conversation -> `after` of the replay_changes in flight
    this.ackDue = new Set(); // conversations whose cursor moved since their last ack
    window.addEventListener("online", () => this.connectNow());
    window.addEventListener("offline", () => this.goOffline());
  }

  // --- cursors ------------------------------------------------------------------------------
  /** Start following a conversation from `seq` (never moves an existing cursor back). */
  follow(conversation, seq) {
    const held = this.cursors.get(conversation);
    if (held === undefined || seq > held) this.cursors.set(conversation, seq);
    // A starting point the page chose is no claim to hold what came before: not acked.
    if (seq > (this.acked.get(conversation) ?? 0)) this.acked.set(conversation, seq);
  }

  unfollow(conversation) {
    this.cursors.delete(conversation);
    this.acked.delete(conversation);
    this.changeCursors.delete(conversation);
  }

  /**
   * Where this page's copy of a conversation's messages stands on its change stream (the
   * `last_change` of the conversation object they were read after). Only a conversation not
   * followed yet takes it: one already followed may have changes in flight past that point.
   */
  followChanges(conversation, change) {
    if (!this.changeCursors.has(conversation)) this.changeCursors.set(conversation, change ?? 0);
  }

  cursor(conversation) {
    return this.cursors.get(conversation) ?? 0;
  }

  /**
   * Messages this page fetched over REST (a history page): where they continue the stream
   * from the cursor, the device has them, so the cursor moves on and they are acked like
   * streamed ones. Messages past a gap are only shown; the stream still brings the gap.
   */
  received(conversation, messages) {
    if (!this.cursors.has(conversation)) return; // before hello: the stream decides where it starts
    let held = this.cursors.get(conversation);
    for (const message of [...messages].sort((a, b) => a.seq - b.seq)) {
      if (message.seq === held + 1) held = message.seq;
    }
    if (held === this.cursors.get(conversation)) return;
    this.cursors.set(conversation, held);
    this.scheduleAck(conversation);
  }

  /** Ack the cursor, if it moved since the last ack (one that could not go out goes after `ready`). */
  ack(conversation) {
    const held = this.cursors.get(conversation);
    if (held === undefined || held <= (this.acked.get(conversation) ?? 0)) return;
    if (this.send({ type: "ack", conversation, seq: held })) this.acked.set(conversation, held);
  }

  /** Ack within ACK_EVERY_MS: whatever else arrives meanwhile rides on the same ack. */
  scheduleAck(conversation) {
    this.ackDue.add(conversation);
    if (this.timers.ack) return;
    this.timers.ack = setTimeout(() => {
      delete this.timers.ack;
      const due = [...this.ackDue];
      this.ackDue.clear();
      for (const id of due) {
        const held = this.cursors.get(id);
        if (held === undefined || held <= (this.acked.get(id) ?? 0)) continue;
        if (this.write({ type: "ack", conversation: id, seq: held })) this.acked.set(id, held);
      }
    }, ACK_EVERY_MS);
  }

  // --- lifecycle ----------------------------------------------------------------------------
  start() {
    this.stopped = false;
    if (!navigator.onLine) this.goOffline();
    else this.open();
  }

  stop() {
    this.stopped = true;
    this.clearTimers();
    this.ws?.close(1000);
  }

  /** Reconnect at once (the "Retry now" button, or the network came back). */
  connectNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    this.clearTimers();
    this.open();
  }

  goOffline() {
    // The browser says there is no network: stop retrying until it says "online" again.
    this.clearTimers();
    this.ready = false;
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.setStatus({ state: State.OFFLINE });
  }

  open() {
    this.ready = false;
    this.setStatus({ state: this.attempt === 0 ? State.CONNECTING : State.RECONNECTING });
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      const cursors = Object.fromEntries([...this.cursors].map(([c, seq]) => [String(c), seq]));
      const changes = Object.fromEntries([...this.changeCursors].map(([c, change]) => [String(c), change]));
      this.replayAsked.clear();
      this.changesAsked.clear();
      // batch_receipts: one "receipts" frame per conversation and window instead of one per member.
      this.write({ type: "hello", cursors, changes, batch_receipts: true });
      this.schedulePing();
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // an old socket we already gave up on
      this.ws = null;
      this.ready = false;
      this.clearTimers();
      this.closed(event.code);
    };
  }

  async closed(code) {
    if (this.stopped || !navigator.onLine) {
      if (!navigator.onLine) this.setStatus({ state: State.OFFLINE });
      return;
    }
    if ([CLOSE_NOT_AUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_RATE_LIMITED].includes(code)) {
      const again = await this.onRefused(code);
      if (!again) return;
      if (code === CLOSE_RATE_LIMITED) this.attempt = Math.max(this.attempt, 4);
    }
    this.retryLater();
  }

  retryLater() {
    this.attempt += 1;
    const ceiling = Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** Math.min(this.attempt - 1, 8));
    const delay = ceiling * (0.5 + Math.random() / 2); // jitter spreads a reconnect storm
    const retryAt = Date.now() + delay;
    this.setStatus({ state: State.RECONNECTING, retryAt });
    this.timers.retry = setTimeout(() => this.open(), delay);
  }

  schedulePing() {
    clearTimeout(this.timers.ping);
    this.timers.ping = setTimeout(() => {
      this.write({ type: "ping" });
      // No pong in time: the connection is dead even if the browser has not noticed yet.
      this.timers.pong = setTimeout(() => this.ws?.close(4000), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  clearTimers() {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    this.timers = {};
  }

  setStatus(status) {
    this.status = status;
    this.onStatus(status);
  }

  // --- frames ---------------------------------------------------------------------------------
  write(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame that needs the stream to be ready (after `ready`); false when it is not. */
  send(frame) {
    return this.ready && this.write(frame);
  }

  receive(frame) {
    this.schedulePing();
    clearTimeout(this.timers.pong);
    switch (frame.type) {
      case "message":
        this.takeMessages(frame.message.conversation, [frame.message], false);
        break;
      case "messages":
        this.replayAsked.delete(frame.conversation); // a page arrived: a new pull may go out
        this.takeMessages(frame.conversation, frame.messages, frame.has_more);
        break;
      case "change":
        this.takeChanges(frame.conversation, [frame], false);
        break;
      case "changes":
        this.changesAsked.delete(frame.conversation);
        this.takeChanges(frame.conversation, frame.changes, frame.has_more);
        break;
      case "ready":
        // Conversations the hello named no cursor for and that were not behind: caught up.
        for (const [id, lastSeq] of Object.entries(frame.conversations)) {
          if (!this.cursors.has(Number(id))) this.follow(Number(id), lastSeq);
        }
        for (const [id, lastChange] of Object.entries(frame.changes || {})) this.followChanges(Number(id), lastChange);
        this.ready = true;
        this.attempt = 0;
        // What arrived while no ack could go out (REST pages while the socket was down).
        for (const conversation of this.cursors.keys()) this.ack(conversation);
        this.setStatus({ state: State.ONLINE });
        this.onFrame(frame);
        break;
      case "conversation.joined":
        this.follow(frame.conversation.id, frame.conversation.last_seq);
        this.followChanges(frame.conversation.id, frame.conversation.last_change);
        this.onFrame(frame);
        break;
      case "conversation.left":
        this.unfollow(frame.conversation.id);
        this.onFrame(frame);
        break;
      case "pong":
        break;
      default:
        this.onFrame(frame);
    }
  }

  takeMessages(conversation, messages, hasMore) {
    if (!messages.length) {
      if (hasMore) this.pull(conversation);
      return;
    }
    if (!this.cursors.has(conversation)) {
      // A conversation our hello named no cursor for: the server resumed from the device's
      // stored ack cursor, which is where this page starts.
      this.cursors.set(conversation, messages[0].seq - 1);
    }
    let held = this.cursors.get(conversation);
    const fresh = [];
    let gap = false;
    for (const message of messages) {
      if (message.seq <= held) continue; // already shown: dedupe by seq
      if (message.seq !== held + 1) { gap = true; break; }
      held = message.seq;
      fresh.push(message);
    }
    this.cursors.set(conversation, held);
    if (fresh.length) {
      this.onFrame({ type: "messages", conversation, messages: fresh });
      // Everything the device receives is acked, replay pages included, within ACK_EVERY_MS:
      // that is what "delivered" means (CONTRACT, "Semantics" 5).
      this.scheduleAck(conversation);
    }
    if (hasMore || gap) this.pull(conversation);
  }

  pull(conversation) {
    const after = this.cursor(conversation);
    if (this.replayAsked.get(conversation) === after) return; // that page is on its way
    this.replayAsked.set(conversation, after);
    this.write({ type: "replay", conversation, after_seq: after });
  }

  /** Change records in `change` order: fresh ones go to the app, a gap is pulled from the store. */
  takeChanges(conversation, records, hasMore) {
    if (records.length && !this.changeCursors.has(conversation)) {
      this.changeCursors.set(conversation, records[0].change - 1); // followed from here on
    }
    let held = this.changeCursors.get(conversation) ?? 0;
    const fresh = [];
    let gap = false;
    for (const record of records) {
      if (record.change <= held) continue; // applied already (a replay overlapping the live stream)
      if (record.change !== held + 1) { gap = true; break; }
      held = record.change;
      fresh.push(record);
    }
    if (records.length) this.changeCursors.set(conversation, held);
    if (fresh.length) this.onFrame({ type: "changes", conversation, changes: fresh });
    if (hasMore || gap) this.pullChanges(conversation);
  }

  pullChanges(conversation) {
    const after = this.changeCursors.get(conversation) ?? 0;
    if (this.changesAsked.get(conversation) === after) return; // that page is on its way
    this.changesAsked.set(conversation, after);
    this.write({ type: "replay_changes", conversation, after });
  }
}
