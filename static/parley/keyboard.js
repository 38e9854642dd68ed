// The app's keyboard shortcuts (listed in the "Keyboard shortcuts" dialog, app.html):
//   Ctrl/Cmd+K    the conversation switcher
//   Alt+Up/Down   the previous / next conversation in the list
//   Esc           back to the composer (dialogs close first; they handle Esc themselves)
//   ? or Ctrl+/   this list
// Arrow keys inside the conversation list and the message list are roving.js's.

const TEXT_FIELD = "input, textarea, select, [contenteditable=true]";

export function installShortcuts({ switcher, move, toComposer, help }) {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const command = event.ctrlKey || event.metaKey;
    const key = event.key;
    if (command && !event.altKey && !event.shiftKey && key.toLowerCase() === "k") {
      event.preventDefault();
      if (!document.querySelector("dialog[open]")) switcher();
      return;
    }
    if (document.querySelector("dialog[open]")) return;
    if (event.altKey && !command && (key === "ArrowUp" || key === "ArrowDown")) {
      event.preventDefault();
      move(key === "ArrowUp" ? -1 : 1);
      return;
    }
    if (key === "Escape" && !command && !event.altKey) {
      if (toComposer()) event.preventDefault();
      return;
    }
    const inField = event.target instanceof Element && event.target.closest(TEXT_FIELD);
    if ((key === "?" && !inField && !command) || (command && key === "/")) {
      event.preventDefault();
      help();
    }
  });
}
