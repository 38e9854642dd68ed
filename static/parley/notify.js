// Notification settings as the browser app applies them (the server applies the same to Web
// Push: docs/notifications.md): a conversation is muted until `me.muted_until`, and `me.notify`
// says which messages notify (all, mentions of me, none). While this tab is hidden, a new
// message that would notify shows a Notification (with the person's permission, no push
// service involved); the title counts unread messages of the conversations that are not quiet.

// "Until I unmute": a mute with no end the server can still store as a time.
export const FOREVER = "9999-12-31T00:00:00Z";
const MUTE_CHOICES = [
  { label: "For 1 hour", hours: 1 },
  { label: "For 8 hours", hours: 8 },
  { label: "For 24 hours", hours: 24 },
  { label: "Until I unmute", hours: null },
];

export const muteChoices = () => MUTE_CHOICES;

/** The `muted_until` of a choice made now. */
export function muteUntil(hours, now = Date.now()) {
  return hours === null ? FOREVER : new Date(now + hours * 3600 * 1000).toISOString();
}

export function isMuted(info, now = Date.now()) {
  const until = info?.me?.muted_until;
  return Boolean(until) && Date.parse(until) > now;
}

/** Muted, or notified of nothing: its unread messages ask for no attention. */
export function isQuiet(info, now = Date.now()) {
  return isMuted(info, now) || info?.me?.notify === "none";
}

export function mutedText(info) {
  if (!isMuted(info)) return "";
  const until = new Date(info.me.muted_until);
  if (until.getUTCFullYear() >= 9000) return "Muted until you unmute it";
  const sameDay = until.toDateString() === new Date().toDateString();
  const when = sameDay ? until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : until.toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
  return `Muted until ${when}`;
}

/** Would this message notify me here (ignoring whether the tab is visible)? */
export function notifies(info, message, meId) {
  if (message.sender.id === meId || message.state !== "visible" || isMuted(info)) return false;
  const level = info?.me?.notify || "all";
  if (level === "none") return false;
  if (level === "mentions") return (message.mentions || []).includes(meId);
  return true;
}

export class InTabNotifier {
  /**
   * @param {object} options
   * @param {{id: number}} options.me
   * @param {(conversation) => string} options.titleOf
   * @param {(conversationId: number, seq: number) => void} options.open
   */
  constructor({ me, titleOf, open }) {
    Object.assign(this, { me, titleOf, open });
  }

  get allowed() {
    return "Notification" in window && Notification.permission === "granted";
  }

  /** Live messages just arrived in `conversation`: alert if the tab is hidden and they notify. */
  offer(conversation, messages) {
    if (!this.allowed || !document.hidden) return;
    const wanted = messages.filter((m) => notifies(conversation.info, m, this.me.id));
    if (!wanted.length) return;
    const mention = wanted.filter((m) => (m.mentions || []).includes(this.me.id)).at(-1);
    const shown = mention || wanted.at(-1);
    const sender = shown.sender.display_name;
    const place = this.titleOf(conversation);
    const direct = conversation.info.kind === "direct";
    const preview = shown.body.replace(/\s+/g, " ").slice(0, 120);
    const title = mention ? (direct ? `${sender} mentioned you` : `${sender} mentioned you in ${place}`)
      : direct ? sender : place;
    const body = mention || direct ? preview : `${sender}: ${preview}`;
    try {
      // The tag is the push's: one notification per conversation, the newest replacing the older.
      const notification = new Notification(title, { body, tag: `conversation-${conversation.id}`, renotify: true });
      notification.onclick = () => {
        window.focus();
        this.open(conversation.id, shown.seq);
        notification.close();
      };
    } catch (error) {
      console.info("parley: notification not shown", error); // e.g. Android, which wants the service worker
    }
  }
}
