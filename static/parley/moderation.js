// The moderators' page: the open queue of flagged messages with their context, dismiss or
// remove with a note, and the resolved history (CONTRACT, "Moderation").
import { api } from "./api.js";
import { el, fullTime, replaceChildren, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);
const REASONS = { spam: "Spam", abuse: "Abuse", other: "Other" };
const ACTIONS = { dismiss: "Dismissed", remove_message: "Message removed" };
let status = "open";

const rows = (data) => (Array.isArray(data) ? data : data.results || data.flags || []);
const who = (user) => (user ? user.display_name || user.username : "someone");

function conversationName(flag) {
  const conversation = flag.conversation || flag.message?.conversation;
  if (conversation && typeof conversation === "object") return conversation.title || `${conversation.kind || "conversation"} #${conversation.id}`;
  return `conversation #${conversation}`;
}

function contextList(flag) {
  const context = flag.context || flag.message_context;
  const messages = Array.isArray(context) && context.length ? context : [flag.message];
  return el("ol", { cls: "flag-context", attrs: { "aria-label": "The message in its conversation" } },
    ...messages.map((m) => el("li", {
      cls: m.id === flag.message.id ? "flagged" : "",
      text: `${who(m.sender)}: ${m.body || (m.state === "removed" ? "(removed)" : "")}`,
    })));
}

function resolutionText(flag) {
  const resolution = flag.resolution || flag;
  const action = ACTIONS[resolution.action] || resolution.action || "Resolved";
  const by = resolution.moderator || resolution.resolved_by;
  const note = resolution.note ?? resolution.resolution_note;
  const when = resolution.resolved_at || flag.resolved_at;
  return [action, by ? `by ${who(by)}` : "", when ? `on ${fullTime(when)}` : "", note ? `: “${note}”` : ""].filter(Boolean).join(" ");
}

function flagCard(flag) {
  const noteId = `note-${flag.id}`;
  const card = el("li", { cls: "flag-card", attrs: { "data-flag": flag.id } },
    el("h2", {}, el("span", { cls: "flag-reason", text: REASONS[flag.reason] || flag.reason }), " ",
      el("span", { text: `Message by ${who(flag.message.sender)} in ${conversationName(flag)}` })),
    el("p", { cls: "flag-meta", text: `Reported by ${who(flag.reporter)} on ${fullTime(flag.created_at)}${flag.note ? ` · “${flag.note}”` : ""}` }),
    contextList(flag));
  if (flag.status === "open") {
    const note = el("textarea", { attrs: { id: noteId, rows: 2, maxlength: 1000 } });
    const act = (action) => async (event) => {
      event.target.disabled = true;
      try {
        await api.post(`moderation/flags/${flag.id}/resolve`, { action, note: note.value.trim() });
        card.remove();
        toast(action === "remove_message" ? "Message removed." : "Flag dismissed.");
        if (!$("flag-list").children.length) showEmpty();
      } catch (error) {
        toast(error.message_for_people || error.message);
        event.target.disabled = false;
      }
    };
    const dismiss = el("button", { cls: "button", text: "Dismiss", attrs: { type: "button" } });
    const remove = el("button", { cls: "button danger", text: "Remove message", attrs: { type: "button" } });
    dismiss.addEventListener("click", act("dismiss"));
    remove.addEventListener("click", act("remove_message"));
    card.append(el("div", { cls: "flag-actions" },
      el("div", { cls: "field" }, el("label", { text: "Note (kept in the audit log)", attrs: { for: noteId } }), note),
      dismiss, remove));
  } else {
    card.append(el("p", { cls: "flag-resolution", text: resolutionText(flag) }));
  }
  return card;
}

function showEmpty() {
  $("flag-status").textContent = status === "open" ? "The queue is empty. Nothing needs a moderator right now." : "Nothing resolved yet.";
}

async function load() {
  for (const tab of ["open", "resolved"]) $(`tab-${tab}`).setAttribute("aria-selected", String(tab === status));
  $("flag-list").setAttribute("aria-labelledby", `tab-${status}`);
  $("flag-status").textContent = "Loading…";
  try {
    const flags = rows(await api.get("moderation/flags", { status }));
    replaceChildren($("flag-list"), flags.map(flagCard));
    if (flags.length) $("flag-status").textContent = `${flags.length} ${status === "open" ? "waiting" : "resolved"}`;
    else showEmpty();
  } catch (error) {
    replaceChildren($("flag-list"), []);
    $("flag-status").textContent = `Could not load the flags: ${error.message}`;
  }
}

$("tab-open").addEventListener("click", () => { status = "open"; load(); });
$("tab-resolved").addEventListener("click", () => { status = "resolved"; load(); });
load();
