// "Are you sure?" as a modal dialog (app.html, #confirm-dialog): focus starts on Cancel, Esc
// or Cancel says no, and focus goes back to where it was when the dialog closes.

/**
 * @param {HTMLDialogElement} dialog
 * @param {{title: string, text: string, quote?: string, action: string}} what
 * @returns {Promise<boolean>} true once the person confirmed
 */
export function confirmAction(dialog, { title, text, quote = "", action }) {
  dialog.querySelector("[data-confirm-title]").textContent = title;
  dialog.querySelector("[data-confirm-text]").textContent = text;
  const quoteBox = dialog.querySelector("[data-confirm-quote]");
  quoteBox.textContent = quote;
  quoteBox.hidden = !quote;
  dialog.querySelector("button[value=confirm]").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });
}
