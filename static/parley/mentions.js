// @-autocomplete in the composer: typing "@" and the start of a name lists the conversation's
// members (and @all where the server allows it); Up and Down choose, Enter or Tab puts
// "@username " in, Esc closes the list. The text box stays a text box (aria-autocomplete,
// aria-activedescendant), and the list is a listbox next to it. The server decides what is a
// mention when the message is stored; this only helps to type one.
import { el, replaceChildren } from "./ui.js";

const SHOWN_AT_MOST = 8;
// "@" at the start of a word, then what may be a username so far, right before the caret.
const TYPING_MENTION = /(?:^|[^\w@.+-])@([\w.+-]{0,150})$/u;

export class MentionAutocomplete {
  /**
   * @param {object} options
   * @param {() => {id: number, username: string, display_name: string}[]} options.people  who may be mentioned
   * @param {() => boolean} options.everyone  whether @all mentions everyone here
   * @param {(text: string) => void} options.announce
   */
  constructor({ input, list, people, everyone, announce }) {
    Object.assign(this, { input, list, people, everyone, announce });
    this.options = [];
    this.active = 0;
    this.start = -1; // where the "@" being completed is in the text
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => this.close());
    // A click on an option must not take the focus from the text box first.
    list.addEventListener("mousedown", (event) => event.preventDefault());
    list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.pick(this.options[Number(option.dataset.index)]);
    });
  }

  get open() {
    return !this.list.hidden;
  }

  /** The members arrived (or changed): what is being typed may match someone now. */
  refresh() {
    if (document.activeElement === this.input) this.update();
  }

  /** Look at the text before the caret: list who matches, or close. */
  update() {
    const caret = this.input.selectionStart;
    const typed = this.input.selectionEnd === caret ? TYPING_MENTION.exec(this.input.value.slice(0, caret)) : null;
    if (!typed) return this.close();
    const prefix = typed[1].toLowerCase();
    this.start = caret - typed[1].length - 1;
    const matches = this.people().filter((u) => u.username.toLowerCase().startsWith(prefix)
      || u.display_name.toLowerCase().split(/\s+/).some((word) => word.startsWith(prefix)));
    if (this.everyone() && "all".startsWith(prefix)) matches.push({ id: null, username: "all", display_name: "Everyone here" });
    const before = this.options.length;
    this.options = matches.slice(0, SHOWN_AT_MOST);
    this.active = Math.min(this.active, Math.max(0, this.options.length - 1));
    if (!this.options.length) return this.close();
    this.render();
    if (this.options.length !== before) {
      this.announce(`${this.options.length} ${this.options.length === 1 ? "person" : "people"} to mention. Up and Down to choose, Enter to pick.`);
    }
  }

  render() {
    replaceChildren(this.list, this.options.map((user, i) => el("li", {
      cls: "mention-option",
      attrs: { role: "option", id: `mention-option-${i}`, "data-index": i, "aria-selected": String(i === this.active) },
    }, el("span", { text: user.display_name }), el("span", { cls: "pick-sub", text: ` @${user.username}` }))));
    this.list.hidden = false;
    this.input.setAttribute("aria-activedescendant", `mention-option-${this.active}`);
    this.list.children[this.active]?.scrollIntoView({ block: "nearest" });
  }

  close() {
    if (!this.open && !this.options.length) return;
    this.list.hidden = true;
    this.options = [];
    this.active = 0;
    this.input.removeAttribute("aria-activedescendant");
  }

  /** The composer's keys while the list is open; true when this took the key. */
  handleKey(event) {
    if (!this.open || event.isComposing || event.altKey || event.ctrlKey || event.metaKey) return false;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.options.length) % this.options.length;
      this.render();
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey) {
      this.pick(this.options[this.active]);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return false;
    }
    event.preventDefault();
    return true;
  }

  pick(user) {
    if (!user) return;
    const text = this.input.value;
    const caret = this.input.selectionStart;
    const inserted = `@${user.username} `;
    this.input.value = text.slice(0, this.start) + inserted + text.slice(caret).replace(/^ /, "");
    const at = this.start + inserted.length;
    this.input.setSelectionRange(at, at);
    this.close();
    this.input.dispatchEvent(new Event("input", { bubbles: true })); // autosize, typing, drafts
  }
}
