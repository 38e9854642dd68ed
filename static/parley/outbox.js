// Messages typed but not yet confirmed by the server, kept in localStorage so that a
// reload, a crash or an offline spell loses nothing. Each entry keeps the client_msg_id it
// was first sent with: the server stores a retry only once (CONTRACT, "Semantics" 2).

export function newClientMsgId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  constructor(userId) {
    this.key = `parley:outbox:${userId}`;
  }

  all() {
    try {
      const entries = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(entries) ? entries : [];
    } catch {
      return [];
    }
  }

  save(entries) {
    localStorage.setItem(this.key, JSON.stringify(entries));
  }

  /** `reply_to`: the id of the message answered; `reply`: its quote, shown while the entry waits.
   * `attachments`: the uploads' payloads (shown while pending); their ids go with the send. */
  add({ conversation, body, reply_to = null, reply = null, attachments = [] }) {
    const entry = { conversation, body, reply_to, reply, attachments, client_msg_id: newClientMsgId(),
                    created_at: new Date().toISOString() };
    this.save([...this.all(), entry]);
    return entry;
  }

  get(clientMsgId) {
    return this.all().find((e) => e.client_msg_id === clientMsgId);
  }

  update(clientMsgId, changes) {
    this.save(this.all().map((e) => (e.client_msg_id === clientMsgId ? { ...e, ...changes } : e)));
  }

  remove(clientMsgId) {
    const entries = this.all();
    const kept = entries.filter((e) => e.client_msg_id !== clientMsgId);
    if (kept.length !== entries.length) this.save(kept);
  }

  /** What still has to go out, oldest first (failed entries wait for the person to decide). */
  waiting() {
    return this.all().filter((e) => !e.failed);
  }
}
