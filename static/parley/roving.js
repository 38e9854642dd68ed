// Roving focus (WAI-ARIA Authoring Practices, "Keyboard navigation inside components"): a
// list is one Tab stop, and the arrow keys move within it. Without it a 50-message chat is
// 50 Tab stops between the conversation list and the composer. Controls inside an item
// (a message's Info or Report) are reachable with Tab only inside the current item.

const CONTROLS = "a[href], button, input, select, textarea";

export class RovingFocus {
  /**
   * @param {HTMLElement} container
   * @param {object} options
   * @param {string} options.items  selector of the focusable items
   * @param {"first" | "last"} options.start  which item is the Tab stop when none was chosen
   */
  constructor(container, { items, start = "first" }) {
    Object.assign(this, { container, selector: items, start });
    this.current = null;
    container.addEventListener("keydown", (event) => this.onKey(event));
    container.addEventListener("focusin", (event) => {
      const item = event.target.closest(this.selector);
      if (item && this.container.contains(item) && item !== this.current) this.setCurrent(item);
    });
  }

  items() {
    return [...this.container.querySelectorAll(this.selector)].filter((item) => !item.hidden);
  }

  /** After a re-render: exactly one item is the Tab stop (the current one while it is still there). */
  refresh(preferred = null) {
    const items = this.items();
    const keep = preferred && items.includes(preferred) ? preferred
      : this.current && items.includes(this.current) ? this.current
        : (this.start === "last" ? items.at(-1) : items[0]) || null;
    this.setCurrent(keep, items);
  }

  setCurrent(item, items = this.items()) {
    this.current = item;
    for (const other of items) {
      const isCurrent = other === item;
      other.tabIndex = isCurrent ? 0 : -1;
      other.classList.toggle("current", isCurrent);
      if (other.matches(CONTROLS)) continue;
      for (const control of other.querySelectorAll(CONTROLS)) control.tabIndex = isCurrent ? 0 : -1;
    }
  }

  focus(item) {
    if (!item) return;
    this.setCurrent(item);
    item.focus();
    item.scrollIntoView?.({ block: "nearest" });
  }

  onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const item = event.target.closest(this.selector);
    if (!item || event.target !== item) return; // keys inside an item's controls are theirs
    const items = this.items();
    const at = items.indexOf(item);
    const page = 10;
    const targets = {
      ArrowDown: items[at + 1], ArrowUp: items[at - 1], Home: items[0], End: items.at(-1),
      PageDown: items[Math.min(items.length - 1, at + page)], PageUp: items[Math.max(0, at - page)],
    };
    if (!(event.key in targets)) return;
    event.preventDefault();
    this.focus(targets[event.key] || item);
  }
}
