// The switcher (Ctrl/Cmd+K): a dialog with a combobox that filters the conversation list as
// you type and, from two characters on, searches the messages of your conversations too
// (WAI-ARIA "combobox with listbox popup", the listbox in two groups): Up and Down move the
// active option, Enter opens it (a message opens in its conversation, at that message), Esc
// closes the dialog and returns focus where it was.
import { MIN_QUERY, resultContent, searchMessages } from "./search.js";
import { el, replaceChildren } from "./ui.js";

const SHOWN_AT_MOST = 20;
const SEARCH_AFTER_MS = 250;

export class Switcher {
  /**
   * @param {object} options
   * @param {() => {id: number, title: string, unread: number}[]} options.conversations  most recent first
   * @param {(id: number) => void} options.choose
   * @param {(conversationId: number, seq: number) => void} options.chooseMessage
   * @param {(id: number) => string | null} options.titleOf  a conversation's name, if this page knows it
   */
  constructor({ dialog, input, list, conversations, choose, chooseMessage, titleOf }) {
    Object.assign(this, { dialog, input, list, conversations, choose, chooseMessage, titleOf });
    this.options = [];
    this.messages = []; // search results for `searched`
    this.searched = "";
    this.searching = null;
    this.timer = null;
    this.active = 0;
    this.status = dialog.querySelector("[data-switcher-status]");
    input.addEventListener("input", () => { this.active = 0; this.render(); this.scheduleSearch(); });
    input.addEventListener("keydown", (event) => this.onKey(event));
    list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.pickOption(this.options.find((o) => o.key === option.id));
    });
  }

  show() {
    this.input.value = "";
    this.active = 0;
    this.messages = [];
    this.searched = "";
    this.failed = null;
    this.render();
    this.dialog.showModal();
    this.input.focus();
  }

  text() {
    return this.input.value.trim();
  }

  matches() {
    const words = this.text().toLowerCase().split(/\s+/).filter(Boolean);
    return this.conversations()
      .filter((c) => words.every((w) => c.title.toLowerCase().includes(w)))
      .slice(0, SHOWN_AT_MOST);
  }

  scheduleSearch() {
    clearTimeout(this.timer);
    const text = this.text();
    if (text.length < MIN_QUERY) {
      this.messages = [];
      this.searched = "";
      this.render();
      return;
    }
    this.timer = setTimeout(() => this.search(text), SEARCH_AFTER_MS);
  }

  async search(text) {
    this.searching = text;
    this.renderStatus();
    try {
      const page = await searchMessages(text);
      if (this.text() !== text) return; // typed on meanwhile: a newer search follows
      this.messages = page.results;
      this.searched = text;
      this.failed = null;
    } catch (error) {
      if (this.text() !== text) return;
      this.messages = [];
      this.searched = text;
      this.failed = error.message; // e.g. too many searches at once: said, not thrown
    } finally {
      if (this.searching === text) this.searching = null;
    }
    this.render();
  }

  render() {
    const conversations = this.matches().map((c) => ({ key: `switch-${c.id}`, conversation: c }));
    const messages = this.searched && this.searched === this.text()
      ? this.messages.map((r) => ({ key: `switch-message-${r.message.id}`, result: r })) : [];
    this.options = [...conversations, ...messages];
    this.active = Math.min(this.active, Math.max(0, this.options.length - 1));
    const option = (entry, index, ...content) => el("div", {
      cls: `switcher-option${entry.result ? " switcher-message" : ""}`,
      attrs: { role: "option", id: entry.key, "aria-selected": String(index === this.active),
               "data-conversation": entry.conversation?.id ?? entry.result.message.conversation },
    }, ...content);
    const group = (id, label, entries, offset, build) => (entries.length ? el("div", {
      attrs: { role: "group", "aria-labelledby": id },
    }, el("div", { cls: "switcher-group-label", text: label, attrs: { id, role: "presentation" } }),
    ...entries.map((entry, i) => option(entry, offset + i, ...build(entry)))) : null);
    replaceChildren(this.list, [
      group("switcher-group-conversations", "Conversations", conversations, 0, ({ conversation: c }) => [
        el("span", { text: c.title }), c.unread ? el("span", { cls: "switcher-unread", text: `${c.unread} unread` }) : null]),
      group("switcher-group-messages", "Messages", messages, conversations.length, ({ result }) =>
        resultContent(result, this.titleOf(result.conversation.id) || result.conversation.title || "Direct chat")),
    ]);
    const active = this.options[this.active];
    if (active) this.input.setAttribute("aria-activedescendant", active.key);
    else this.input.removeAttribute("aria-activedescendant");
    this.input.setAttribute("aria-expanded", String(this.options.length > 0));
    if (active) document.getElementById(active.key)?.scrollIntoView({ block: "nearest" });
    this.renderStatus();
  }

  renderStatus() {
    const text = this.text();
    let status = "";
    if (this.searching === text && text) status = "Searching messages…";
    else if (this.failed && this.searched === text) status = `Messages could not be searched: ${this.failed}`;
    else if (!this.options.length) status = text.length >= MIN_QUERY && this.searched === text
      ? "No conversation or message matches." : "No conversation by that name.";
    else if (this.searched === text && this.messages.length) {
      status = `${this.messages.length} message${this.messages.length === 1 ? "" : "s"} found.`;
    }
    this.status.textContent = status;
    this.status.hidden = !status;
  }

  onKey(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.options.length) % Math.max(1, this.options.length);
      this.render();
    } else if (event.key === "Enter") {
      event.preventDefault();
      this.pickOption(this.options[this.active]);
    }
  }

  pickOption(entry) {
    if (!entry) return;
    this.dialog.close();
    if (entry.result) this.chooseMessage(entry.result.message.conversation, entry.result.message.seq);
    else this.choose(entry.conversation.id);
  }
}
