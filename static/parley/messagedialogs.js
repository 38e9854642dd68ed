/** A message's dialogs: who it reached and who read it, and reporting it to the moderators. */
import { api } from "./api.js";
import { el, replaceChildren, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

const GONE = { deleted: "This message was deleted.", removed: "This message was removed by a moderator." };

export async function showInfo(conversation, message) {
  try {
    const info = await api.get(`messages/${message.id}/info`);
    $("info-body").textContent = GONE[info.message.state] || info.message.body;
    const { read, delivered, sent } = info.counts;
    $("info-counts").textContent = `Read by ${read} · Delivered to ${delivered} · Not yet delivered to ${sent}`;
    const labels = { read: "Read", delivered: "Delivered", sent: "Sent" };
    replaceChildren($("info-recipients"), info.recipients.map((r) => el("li", {},
      el("span", { text: r.user.display_name }),
      el("span", { cls: "state-label", text: labels[r.state], attrs: { "data-state": r.state } }))));
    $("info-dialog").showModal();
  } catch (error) {
    toast(error.message);
  }
}

let flagging = null;
export function showFlag(conversation, message) {
  flagging = message;
  $("flag-body").textContent = message.body;
  $("flag-form").reset();
  $("flag-error").hidden = true;
  $("flag-dialog").showModal();
}

/** Wires the report form (`showFlag` fills and opens it). */
export function installMessageDialogs() {
  $("flag-form").addEventListener("submit", async (event) => {
    if (event.submitter?.value !== "report") return;
    event.preventDefault();
    const reason = new FormData($("flag-form")).get("reason");
    if (!reason) {
      $("flag-error").textContent = "Pick a reason.";
      $("flag-error").hidden = false;
      return;
    }
    try {
      await api.post(`messages/${flagging.id}/flag`, { reason, note: $("flag-note").value.trim() });
      $("flag-dialog").close();
      toast("Reported. A moderator will look at it.");
    } catch (error) {
      $("flag-error").textContent = error.status === 409 ? "You have already reported this message." : error.message_for_people;
      $("flag-error").hidden = false;
    }
  });
}
