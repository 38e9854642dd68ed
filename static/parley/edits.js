// Editing a message in place (CONTRACT v1.1, `PATCH /messages/{id}`): the message's bubble
// becomes a text box; Enter saves, Shift+Enter starts a new line, Esc cancels. Only my own
// visible messages within the edit window (a setting) offer it; what the server refuses
// (the window passed meanwhile, the message was deleted) is said in the box, which stays open.
// And deleting one (`DELETE /messages/{id}`), once the person confirmed it.
import { api } from "./api.js";
import { confirmAction } from "./confirm.js";
import { announce, el, toast } from "./ui.js";

export class Editor {
  /**
   * @param {object} options
   * @param {() => void} options.changed  redraw the messages (the box comes and goes)
   * @param {(message: object) => void} options.saved  the message as the server now has it
   * @param {() => void} options.done  the box closed: focus back where writing goes on
   */
  constructor({ store, maxLength, windowSeconds, changed, saved, done }) {
    Object.assign(this, { store, maxLength, windowSeconds, changed, saved, done });
    this.editing = null; // {id, draft, error, saving}
  }

  /** May I edit this message now (mine, stored, visible, within the window)? */
  editable(message) {
    if (!message.seq || message.state !== "visible" || message.sender.id !== this.store.me.id) return false;
    return !this.windowSeconds || Date.now() - new Date(message.created_at) < this.windowSeconds * 1000;
  }

  isEditing(message) {
    return Boolean(message.id) && this.editing?.id === message.id;
  }

  /** The state of the box for a message's signature (it is rebuilt when this changes). */
  signature(message) {
    return this.isEditing(message) ? `editing|${this.editing.error || ""}|${this.editing.saving}` : "";
  }

  start(message) {
    this.editing = { id: message.id, draft: message.body, error: null, saving: false };
    this.changed();
  }

  cancel() {
    if (!this.editing) return;
    this.editing = null;
    this.changed();
    this.done();
  }

  async save(message) {
    const body = this.editing.draft;
    if (!body.trim()) return this.fail("A message can't be empty. To take it back, delete it.");
    if (body.length > this.maxLength) return this.fail(`Messages can be at most ${this.maxLength} characters.`);
    if (body === message.body) return this.cancel();
    this.editing.saving = true;
    this.changed();
    try {
      this.saved(await api.patch(`messages/${message.id}`, { body }));
      this.editing = null;
      this.changed();
      this.done();
    } catch (error) {
      if (this.editing) this.editing.saving = false;
      this.fail(refusal(error));
    }
  }

  fail(text) {
    if (!this.editing) return;
    this.editing.error = text;
    this.changed();
  }

  /** The box that stands in for the bubble while editing `message`. */
  box(message) {
    const id = `edit-${message.id}`;
    const input = el("textarea", { attrs: { id, rows: 2, "aria-describedby": `${id}-help${this.editing.error ? ` ${id}-error` : ""}` } });
    input.value = this.editing.draft;
    input.addEventListener("input", () => { if (this.editing) this.editing.draft = input.value; });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.save(message);
      } else if (event.key === "Escape") {
        event.preventDefault(); // not the app's Esc: this one only cancels the edit
        this.cancel();
      }
    });
    const cancel = el("button", { cls: "button small ghost", text: "Cancel", attrs: { type: "button" } });
    cancel.addEventListener("click", () => this.cancel());
    const save = el("button", { cls: "button small primary", text: this.editing.saving ? "Saving…" : "Save",
                                attrs: { type: "submit", disabled: this.editing.saving } });
    const form = el("form", { cls: "edit-box", attrs: { "aria-label": "Edit message" } },
      el("label", { cls: "visually-hidden", text: "Edit message", attrs: { for: id } }),
      input,
      this.editing.error ? el("p", { cls: "form-error", text: this.editing.error, attrs: { id: `${id}-error`, role: "alert" } }) : null,
      el("div", { cls: "edit-foot" },
        el("span", { cls: "help", text: "Enter saves · Esc cancels", attrs: { id: `${id}-help` } }), cancel, save));
    form.addEventListener("submit", (event) => { event.preventDefault(); this.save(message); });
    return form;
  }

  /** Put the caret in the open box (after the messages were drawn). */
  focusBox(list) {
    const input = this.editing && list.querySelector(`#edit-${this.editing.id}`);
    if (!input || document.activeElement === input) return;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

/** What to tell the person when the server refuses an edit or a delete. */
export function refusal(error) {
  if (error.status === 403 && /time/.test(error.message)) return "The time to edit this message has passed.";
  if (error.status === 409) return "This message was deleted or removed, so it can't be changed any more.";
  if (error.status === 429) return "That's a lot of changes at once. Try again in a moment.";
  return error.message_for_people || error.message;
}

/** Delete my message for everyone, after a confirmation dialog (Cancel has the focus first). */
export async function deleteMessage({ dialog, store, message }) {
  const sure = await confirmAction(dialog, {
    title: "Delete message?",
    text: "It will be deleted for everyone in this conversation. This can't be undone.",
    quote: message.body,
    action: "Delete",
  });
  if (!sure) return;
  try {
    const deleted = await api.delete(`messages/${message.id}`);
    store.updateMessage(deleted.conversation, deleted);
    announce("Message deleted.");
  } catch (error) {
    toast(refusal(error));
  }
}
