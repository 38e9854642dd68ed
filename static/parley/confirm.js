// "Are you sure?" as a modal dialog (app.html, #confirm-dialog): focus starts on Cancel, Esc
// or Cancel says no, and focus goes back to where it was when the dialog closes.

/**
 * @param {HTMLDialogElement} dialog
 * @param {{title: string, text: string, quote?: string, action: string}} what
 * @returns {Promise<boolean>} true once the person confirmed
 */
// The opening of each dialog still waiting for its answer.
const waiting = new WeakMap();

export function confirmAction(dialog, { title, text, quote = "", action }) {
  settle(dialog); // closed, but its queued "close" has not run yet: its answer is already final
  dialog.querySelector("[data-confirm-title]").textContent = title;
  dialog.querySelector("[data-confirm-text]").textContent = text;
  const quoteBox = dialog.querySelector("[data-confirm-quote]");
  quoteBox.textContent = quote;
  quoteBox.hidden = !quote;
  dialog.querySelector("button[value=confirm]").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    // "close" is queued, not fired at once: an earlier opening's close (Esc, then this dialog
    // opened again at once) can arrive while this one is open, and is not this answer.
    const closed = () => settle(dialog);
    waiting.set(dialog, { resolve, closed });
    dialog.addEventListener("close", closed);
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });
}

/** Answer the opening of ``dialog`` that is waiting, if the dialog is closed. */
function settle(dialog) {
  const opening = waiting.get(dialog);
  if (!opening || dialog.open) return;
  waiting.delete(dialog);
  dialog.removeEventListener("close", opening.closed);
  opening.resolve(dialog.returnValue === "confirm");
}
