// Reactions (CONTRACT v1.1): the bar under a message (each emoji with its count, pressed when
// it is mine, a click toggles it, the tooltip says who reacted) and a small emoji picker. The
// picker's emoji are a hand-picked set, shipped with the page (no CDN, no font to fetch);
// the server also takes any other single emoji.
import { api } from "./api.js";
import { refusal } from "./edits.js";
import { el, toast } from "./ui.js";

export const EMOJI = [
  ["👍", "thumbs up"], ["👎", "thumbs down"], ["❤️", "red heart"], ["😂", "face with tears of joy"],
  ["😮", "face with open mouth"], ["😢", "crying face"], ["🎉", "party popper"], ["🙏", "folded hands"],
  ["👀", "eyes"], ["🔥", "fire"], ["✅", "check mark"], ["👏", "clapping hands"],
  ["😊", "smiling face"], ["😄", "grinning face"], ["🤔", "thinking face"], ["😅", "grinning face with sweat"],
  ["😍", "smiling face with heart-eyes"], ["🙌", "raising hands"], ["💯", "hundred points"], ["🚀", "rocket"],
  ["👌", "OK hand"], ["🤝", "handshake"], ["😎", "smiling face with sunglasses"], ["😬", "grimacing face"],
  ["🙈", "see-no-evil monkey"], ["☕", "hot beverage"], ["🍕", "pizza"], ["⭐", "star"],
  ["💡", "light bulb"], ["❓", "question mark"], ["⚠️", "warning"], ["😴", "sleeping face"],
];
const COLUMNS = 8;

/** "You, Alice Archer and 3 others": who reacted, as far as the message says (the first 50). */
export function whoReacted(reaction, store, conversation) {
  const names = reaction.users.map((id) => (id === store.me.id ? "You" : conversation?.members?.get(id)?.display_name || "Someone"));
  const others = reaction.count - reaction.users.length;
  if (others > 0) names.push(`${others} other${others === 1 ? "" : "s"}`);
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names.at(-1)}` : names[0] || "Nobody";
}

/** Add or take back my reaction; the answer is the message as it now is (its change frame follows). */
export async function react({ store, message, emoji, add }) {
  try {
    const path = `messages/${message.id}/reactions`;
    const changed = add ? await api.post(path, { emoji }) : await api.delete(`${path}/${encodeURIComponent(emoji)}`);
    store.updateMessage(changed.conversation, changed);
  } catch (error) {
    toast(error.status === 409 ? "This message can't take more reactions." : refusal(error));
  }
}

/** The bar under a message, or null when nobody reacted. */
export function reactionBar({ message, store, conversation, onToggle, onAdd }) {
  if (!message.reactions?.length || message.state !== "visible") return null;
  const bar = el("div", { cls: "reactions", attrs: { role: "group", "aria-label": "Reactions" } });
  for (const reaction of message.reactions) {
    const mine = reaction.users.includes(store.me.id);
    const who = whoReacted(reaction, store, conversation);
    const button = el("button", {
      cls: "reaction",
      attrs: { type: "button", tabindex: "-1", "aria-pressed": String(mine), "data-emoji": reaction.emoji,
               title: `${who} reacted with ${reaction.emoji}`,
               "aria-label": `${reaction.emoji} ${reaction.count}, ${who}` },
    }, el("span", { text: reaction.emoji, attrs: { "aria-hidden": "true" } }),
    el("span", { cls: "reaction-count", text: String(reaction.count), attrs: { "aria-hidden": "true" } }));
    button.addEventListener("click", () => onToggle(message, reaction.emoji, mine));
    bar.append(button);
  }
  const add = el("button", { cls: "reaction add-reaction", text: "+",
                             attrs: { type: "button", tabindex: "-1", "aria-label": "Add a reaction", title: "Add a reaction" } });
  add.addEventListener("click", () => onAdd(message, add));
  bar.append(add);
  return bar;
}

/**
 * The emoji picker: a modal dialog next to the button that opened it (so Esc closes it and
 * focus goes back there), a grid of buttons that the arrow keys move through (one Tab stop),
 * Enter or a click picks.
 */
export class EmojiPicker {
  constructor(dialog) {
    this.dialog = dialog;
    this.grid = dialog.querySelector("[data-emoji-grid]");
    this.onPick = null;
    this.buttons = EMOJI.map(([emoji, name], i) => {
      const button = el("button", { cls: "emoji-option", text: emoji,
                                    attrs: { type: "button", "aria-label": name, title: name, tabindex: i ? "-1" : "0" } });
      button.addEventListener("click", () => this.pick(emoji));
      return button;
    });
    this.grid.replaceChildren(...this.buttons);
    this.grid.addEventListener("keydown", (event) => this.onKey(event));
    // A click on the backdrop (outside the picker's box) closes it.
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  }

  open(anchor, onPick) {
    this.onPick = onPick;
    this.dialog.showModal();
    this.place(anchor);
    this.focus(0);
  }

  /** Beside the button that opened it, inside the window (the CSS centres it on a phone). */
  place(anchor) {
    const box = this.dialog.getBoundingClientRect();
    const at = anchor?.isConnected ? anchor.getBoundingClientRect() : null;
    this.dialog.classList.toggle("placed", Boolean(at) && window.innerWidth >= 540);
    if (!this.dialog.classList.contains("placed")) return;
    const left = Math.min(Math.max(8, at.left), window.innerWidth - box.width - 8);
    const below = at.bottom + 6;
    const top = below + box.height < window.innerHeight - 8 ? below : Math.max(8, at.top - box.height - 6);
    this.dialog.style.left = `${left}px`;
    this.dialog.style.top = `${top}px`;
  }

  focus(index) {
    const at = Math.max(0, Math.min(this.buttons.length - 1, index));
    this.buttons.forEach((button, i) => { button.tabIndex = i === at ? 0 : -1; });
    this.buttons[at].focus();
  }

  onKey(event) {
    const at = this.buttons.indexOf(document.activeElement);
    if (at === -1) return;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: COLUMNS, ArrowUp: -COLUMNS };
    if (event.key in moves) {
      event.preventDefault();
      this.focus(at + moves[event.key]);
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      this.focus(event.key === "Home" ? 0 : this.buttons.length - 1);
    }
  }

  pick(emoji) {
    this.dialog.close();
    this.onPick?.(emoji);
  }
}
