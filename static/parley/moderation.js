// The moderators' page: the open queue of flagged messages with their context, dismiss or
// remove with a note, and the resolved history (CONTRACT, "Moderation").
import { api } from "./api.js";
import { fullTime } from "./dates.js";
import { el, replaceChildren, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);
const REASONS = { spam: "Spam", abuse: "Abuse", other: "Other" };
const ACTIONS = { dismiss: "Dismissed", remove_message: "Message removed" };
let status = "open";

const who = (user) => user.display_name || user.username;

function conversationName({ conversation }) {
  if (conversation.title) return conversation.title;
  return conversation.kind === "direct" ? "a direct chat" : `an untitled ${conversation.kind}`;
}

/** The reported message as it was reported: moderators keep the text even after removal. */
function evidence(flag) {
  const removed = flag.message.state === "removed";
  return el("blockquote", { cls: "flag-evidence" },
    el("p", { cls: "flag-evidence-meta", text: `${who(flag.message.sender)} · ${fullTime(flag.message.created_at)}${removed ? " · removed" : ""}` }),
    el("p", { cls: "flag-evidence-body", text: flag.evidence }));
}

function resolutionText({ decision, resolved_at: resolvedAt }) {
  if (!decision) return `Resolved on ${fullTime(resolvedAt)}`;
  const action = ACTIONS[decision.action] || decision.action;
  return `${action} by ${who(decision.moderator)} on ${fullTime(decision.created_at)}${decision.note ? `: “${decision.note}”` : ""}`;
}

function flagCard(flag) {
  const noteId = `note-${flag.id}`;
  const card = el("li", { cls: "flag-card", attrs: { "data-flag": flag.id } },
    el("h2", {}, el("span", { cls: "flag-reason", text: REASONS[flag.reason] || flag.reason }), " ",
      el("span", { text: `Message by ${who(flag.message.sender)} in ${conversationName(flag)}` })),
    el("p", { cls: "flag-meta", text: `Reported by ${who(flag.reporter)} on ${fullTime(flag.created_at)}${flag.note ? ` · “${flag.note}”` : ""}` }),
    evidence(flag));
  if (flag.status === "open") {
    const note = el("textarea", { attrs: { id: noteId, rows: 2, maxlength: 1000 } });
    const act = (action) => async (event) => {
      event.target.disabled = true;
      try {
        await api.post(`moderation/flags/${flag.id}/resolve`, { action, note: note.value.trim() });
        toast(action === "remove_message" ? "Message removed." : "Flag dismissed.");
      } catch (error) {
        toast(error.status === 409 ? "Another moderator resolved this flag already." : error.message_for_people);
      }
      await load(); // removing a message resolves its other flags too
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
    const flags = (await api.get("moderation/flags", { status, limit: 100 })).results;
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
