// The conversation details panel (a dialog from the chat header): name and topic for owners
// and admins, my notification settings here (notify level, mute), the members (members.js),
// and leaving. Also the list's mute dialog. Everything goes through the REST API; the server
// tells every device of the change (`conversation.updated`), and this panel redraws from it.
import { api } from "./api.js";
import { MemberList } from "./members.js";
import { FOREVER, isMuted, muteChoices, muteUntil, mutedText } from "./notify.js";
import { el, replaceChildren } from "./ui.js";

const $ = (id) => document.getElementById(id);

/** PATCH my settings in a conversation and put the answer (`me`) in the store. */
export async function saveMySettings(store, conversation, changes) {
  const me = await api.patch(`conversations/${conversation.id}/me`, changes);
  store.upsertConversation({ ...conversation.info, me: { ...conversation.info.me, ...me } });
  return me;
}

export class DetailsPanel {
  /**
   * @param {object} options
   * @param {import("./store.js").Store} options.store
   * @param {(text: string) => void} options.say
   * @param {(conversation) => void} options.left  called after I left the conversation
   */
  constructor({ store, say, left }) {
    Object.assign(this, { store, say, left });
    this.dialog = $("details-dialog");
    this.conversation = null;
    this.members = new MemberList({
      list: $("member-list"), count: $("member-count"),
      add: { section: $("add-members"), input: $("add-member-search"), results: $("add-member-results") },
      me: store.me, say,
      loaded: (users) => { if (this.conversation) this.store.setMembers(this.conversation.id, users); },
    });
    $("details-form").addEventListener("submit", (event) => this.saveDetails(event));
    for (const radio of this.dialog.querySelectorAll("input[name=notify]")) {
      radio.addEventListener("change", () => this.saveNotify(radio.value));
    }
    $("details-mute").addEventListener("change", (event) => this.saveMute(event.target.value));
    $("leave-conversation").addEventListener("click", () => this.leave());
    this.dialog.addEventListener("close", () => {
      if (this.dialog.open) return; // a queued close of an earlier showing, arriving after a reopen
      this.conversation = null;
      this.members.reset();
    });
  }

  get open() {
    return this.dialog.open && this.conversation !== null;
  }

  show(conversation) {
    this.conversation = conversation;
    this.render();
    this.dialog.showModal();
    this.members.load(conversation).catch((error) => this.say(error.message));
  }

  /** The conversation changed (a frame, or my own change): redraw what it shows. */
  refresh(conversationId, { members = false } = {}) {
    if (!this.open || this.conversation.id !== conversationId) return;
    this.conversation = this.store.get(conversationId);
    if (!this.conversation?.info.me) {
      this.dialog.close();
      return;
    }
    this.render();
    if (members) this.members.load(this.conversation).catch((error) => console.warn("parley:", error));
  }

  render() {
    const { info } = this.conversation;
    const can = new Set(info.me?.can || []);
    $("details-title").textContent = `About ${this.store.title(this.conversation)}`;
    const editing = this.dialog.contains(document.activeElement) && document.activeElement.closest("#details-form");
    $("details-form").hidden = !can.has("edit");
    if (!editing) {
      $("details-name").value = info.title || "";
      $("details-name").required = info.kind === "channel";
      $("details-topic").value = info.topic || "";
    }
    $("details-error").hidden = true;
    const topic = $("details-topic-text");
    topic.hidden = can.has("edit") || !info.topic;
    topic.textContent = info.topic || "";
    for (const radio of this.dialog.querySelectorAll("input[name=notify]")) radio.checked = radio.value === (info.me?.notify || "all");
    this.renderMute(info);
    $("leave-conversation").hidden = !can.has("leave");
    if (this.members.conversation) this.members.conversation = this.conversation;
  }

  renderMute(info) {
    const select = $("details-mute");
    const current = isMuted(info) ? (info.me.muted_until.startsWith("9999") ? "forever" : "until") : "";
    const options = [el("option", { text: "Not muted", attrs: { value: "" } })];
    if (current === "until") options.push(el("option", { text: mutedText(info), attrs: { value: "until" } }));
    for (const choice of muteChoices()) {
      options.push(el("option", { text: choice.label, attrs: { value: choice.hours === null ? "forever" : String(choice.hours) } }));
    }
    replaceChildren(select, options);
    select.value = current;
  }

  async saveDetails(event) {
    event.preventDefault();
    const { info } = this.conversation;
    const changes = {};
    const title = $("details-name").value.trim();
    const topic = $("details-topic").value.trim();
    if (title !== (info.title || "")) changes.title = title;
    if (topic !== (info.topic || "")) changes.topic = topic;
    if (!Object.keys(changes).length) return;
    try {
      const updated = await api.patch(`conversations/${this.conversation.id}`, changes);
      this.store.upsertConversation(updated);
      this.say("Saved.");
      document.activeElement?.blur?.();
      this.refresh(this.conversation.id);
    } catch (error) {
      $("details-error").textContent = error.message_for_people || error.message;
      $("details-error").hidden = false;
    }
  }

  async saveNotify(level) {
    try {
      await saveMySettings(this.store, this.conversation, { notify: level });
      this.say({ all: "You'll be notified of every message here.", mentions: "You'll be notified only when mentioned here.",
                 none: "You won't be notified of anything here." }[level]);
    } catch (error) {
      this.say(error.message);
      this.render();
    }
  }

  async saveMute(value) {
    if (value === "until") return; // the current mute, kept
    const until = value === "" ? null : value === "forever" ? FOREVER : muteUntil(Number(value));
    try {
      await saveMySettings(this.store, this.conversation, { muted_until: until });
      this.say(until ? mutedText(this.store.get(this.conversation.id).info) : "Unmuted.");
      this.render();
    } catch (error) {
      this.say(error.message);
      this.render();
    }
  }

  async leave() {
    const conversation = this.conversation;
    if (!window.confirm(`Leave ${this.store.title(conversation)}? You will stop receiving its messages.`)) return;
    try {
      await api.delete(`conversations/${conversation.id}/members/${this.store.me.id}`);
      this.dialog.close();
      this.left(conversation);
    } catch (error) {
      this.say(error.message_for_people || error.message);
    }
  }
}

/** The conversation list's mute button: a small dialog of durations, or unmute at once. */
export class MuteDialog {
  constructor({ store, say }) {
    Object.assign(this, { store, say });
    this.dialog = $("mute-dialog");
    this.conversation = null;
    this.dialog.addEventListener("click", async (event) => {
      const choice = event.target.closest("button[data-hours]");
      if (!choice || !this.conversation) return;
      const hours = choice.dataset.hours === "forever" ? null : Number(choice.dataset.hours);
      await this.mute(this.conversation, muteUntil(hours));
      this.dialog.close();
    });
    replaceChildren($("mute-choices"), muteChoices().map((choice) => el("li", {},
      el("button", { cls: "button", text: choice.label,
                     attrs: { type: "button", "data-hours": choice.hours === null ? "forever" : choice.hours } }))));
  }

  /** Mute (asking how long), or unmute a muted conversation at once. */
  toggle(conversation) {
    if (isMuted(conversation.info)) {
      this.mute(conversation, null);
      return;
    }
    this.conversation = conversation;
    $("mute-title").textContent = `Mute ${this.store.title(conversation)}`;
    this.dialog.showModal();
  }

  async mute(conversation, until) {
    try {
      await saveMySettings(this.store, conversation, { muted_until: until });
      this.say(until ? `${this.store.title(conversation)}: ${mutedText(this.store.get(conversation.id).info).toLowerCase()}.`
        : `${this.store.title(conversation)} is no longer muted.`);
    } catch (error) {
      this.say(error.message);
    }
  }
}
