// The conversation switcher (Ctrl/Cmd+K): a dialog with a combobox that filters the
// conversation list as you type (WAI-ARIA "combobox with listbox popup"): Up and Down move
// the active option, Enter opens it, Esc closes the dialog and returns focus where it was.
import { el, replaceChildren } from "./ui.js";

const SHOWN_AT_MOST = 20;

export class Switcher {
  /**
   * @param {object} options
   * @param {() => {id: number, title: string, unread: number}[]} options.conversations  most recent first
   * @param {(id: number) => void} options.choose
   */
  constructor({ dialog, input, list, conversations, choose }) {
    Object.assign(this, { dialog, input, list, conversations, choose });
    this.options = [];
    this.active = 0;
    input.addEventListener("input", () => { this.active = 0; this.render(); });
    input.addEventListener("keydown", (event) => this.onKey(event));
    list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.pick(Number(option.dataset.conversation));
    });
  }

  show() {
    this.input.value = "";
    this.active = 0;
    this.render();
    this.dialog.showModal();
    this.input.focus();
  }

  matches() {
    const words = this.input.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    return this.conversations()
      .filter((c) => words.every((w) => c.title.toLowerCase().includes(w)))
      .slice(0, SHOWN_AT_MOST);
  }

  render() {
    this.options = this.matches();
    this.active = Math.min(this.active, Math.max(0, this.options.length - 1));
    replaceChildren(this.list, this.options.map((c, i) => el("li", {
      cls: "switcher-option",
      attrs: { role: "option", id: `switch-${c.id}`, "data-conversation": c.id, "aria-selected": String(i === this.active) },
    }, el("span", { text: c.title }), c.unread ? el("span", { cls: "switcher-unread", text: `${c.unread} unread` }) : null)));
    const active = this.options[this.active];
    if (active) this.input.setAttribute("aria-activedescendant", `switch-${active.id}`);
    else this.input.removeAttribute("aria-activedescendant");
    this.input.setAttribute("aria-expanded", String(this.options.length > 0));
    document.getElementById(`switch-${active?.id}`)?.scrollIntoView({ block: "nearest" });
    this.dialog.querySelector("[data-switcher-empty]").hidden = this.options.length > 0;
  }

  onKey(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.options.length) % Math.max(1, this.options.length);
      this.render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const chosen = this.options[this.active];
      if (chosen) this.pick(chosen.id);
    }
  }

  pick(id) {
    this.dialog.close();
    this.choose(id);
  }
}
