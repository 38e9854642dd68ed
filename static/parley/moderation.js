// The moderators' page: the open queue, each flag with its message in context and a link into
// the conversation; dismiss, remove, suspend the sender or slow the conversation down, each
// with a note for the audit trail; the resolved flags and the audit trail itself.
import { api, inBatches } from "./api.js";
import { fullTime } from "./dates.js";
import { refreshPendingCount, startPendingCount } from "./pending.js";
import { el, replaceChildren, toast } from "./ui.js";

const config = JSON.parse(document.getElementById("parley-config").textContent);
const $ = (id) => document.getElementById(id);
const REASONS = { spam: "Spam", abuse: "Abuse", other: "Other" };
const ACTIONS = {
  dismiss: "Dismissed", remove_message: "Message removed", suspend: "Suspended",
  unsuspend: "Suspension lifted", slow_mode: "Slow mode set",
};
const SLOW_MODES = [[0, "Off"], [10, "10 seconds"], [30, "30 seconds"], [60, "1 minute"], [300, "5 minutes"],
                    [900, "15 minutes"], [3600, "1 hour"]];
let view = "open";

const who = (user) => (user ? user.display_name || user.username : "someone");

function conversationName(conversation) {
  if (conversation.title) return conversation.title;
  return conversation.kind === "direct" ? "a direct chat" : `an untitled ${conversation.kind}`;
}

/** The reported message as it was reported: moderators keep the text even after an edit or a removal. */
function evidence(flag) {
  const gone = flag.message.state !== "visible" ? ` · ${flag.message.state}` : "";
  return el("blockquote", { cls: "flag-evidence" },
    el("p", { cls: "flag-evidence-meta", text: `${who(flag.message.sender)} · ${fullTime(flag.message.created_at)}${gone}` }),
    el("p", { cls: "flag-evidence-body", text: flag.reported_body }));
}

/** What the message said, version by version, when it was edited (or taken down) after or before the report. */
function history(flag) {
  const now = flag.message.state === "visible" ? flag.evidence
    : flag.evidence ? `${flag.evidence} (${flag.message.state})` : `(${flag.message.state} by the sender; the text is gone)`;
  if (!flag.edits.length && now === flag.reported_body) return null;
  const versions = flag.edits.map((edit, i) => ({
    when: i === 0 ? `Sent ${fullTime(flag.message.created_at)}` : `Edited ${fullTime(flag.edits[i - 1].replaced_at)}`,
    body: edit.body,
  }));
  const lastEdit = flag.edits.at(-1);
  versions.push({ when: lastEdit ? `Edited ${fullTime(lastEdit.replaced_at)} · now` : "Now", body: now });
  return el("details", { cls: "flag-history", attrs: { open: true } },
    el("summary", { text: `Edit history (${flag.edits.length} edit${flag.edits.length === 1 ? "" : "s"})` }),
    el("ol", {}, ...versions.map((v) => el("li", { cls: v.body === flag.reported_body ? "reported" : "" },
      el("span", { cls: "context-meta", text: `${v.when}${v.body === flag.reported_body ? " · reported" : ""}` }),
      el("span", { cls: "context-body", text: v.body })))));
}

function resolutionText({ decision, resolved_at: resolvedAt }) {
  if (!decision) return `Resolved on ${fullTime(resolvedAt)}`;
  const action = ACTIONS[decision.action] || decision.action;
  return `${action} by ${who(decision.moderator)} on ${fullTime(decision.created_at)}${decision.note ? `: “${decision.note}”` : ""}`;
}

/** Run a moderator's action from a button, then show the queue as it now is. */
function act(button, work, done) {
  return async () => {
    button.disabled = true;
    try {
      await work();
      toast(done);
    } catch (error) {
      toast(error.status === 409 ? "Another moderator resolved this flag already." : error.message_for_people);
    }
    await load();
    refreshPendingCount();
  };
}

function contextList(flag, context) {
  return el("ol", { cls: "flag-context", attrs: { "aria-label": "The message in context" } },
    ...context.messages.map((m) => {
      const flagged = m.seq === context.flagged_seq;
      const gone = { removed: "(removed by a moderator)", deleted: "(deleted)" }[m.state];
      const body = flagged ? flag.reported_body : gone || m.body;
      return el("li", { cls: flagged ? "flagged" : "", attrs: { "aria-current": flagged ? "true" : false } },
        el("span", { cls: "context-meta", text: `${who(m.sender)} · ${fullTime(m.created_at)}${flagged ? " · reported" : ""}` }),
        el("span", { cls: "context-body", text: body }));
    }));
}

function tools(flag, context, note) {
  const row = el("div", { cls: "flag-tools" });
  const sender = who(context.sender);
  const suspend = el("button", { cls: "button", text: context.sender_suspended ? `Lift ${sender}'s suspension` : `Suspend ${sender}`,
                                 attrs: { type: "button" } });
  suspend.addEventListener("click", act(suspend, () => api.put(`moderation/users/${context.sender.id}/suspension`,
    { suspended: !context.sender_suspended, note: note.value.trim() }),
  context.sender_suspended ? `${sender} may send again.` : `${sender} is suspended.`));
  const selectId = `slow-${flag.id}`;
  const select = el("select", { attrs: { id: selectId } }, ...SLOW_MODES.map(([seconds, label]) => el("option", {
    text: label, attrs: { value: seconds, selected: seconds === (context.conversation.slow_mode_seconds ?? 0) },
  })));
  const slow = el("button", { cls: "button", text: "Set slow mode", attrs: { type: "button" } });
  slow.addEventListener("click", act(slow, () => api.put(`moderation/conversations/${context.conversation.id}/slow-mode`,
    { seconds: Number(select.value), note: note.value.trim() }), "Slow mode set."));
  row.append(suspend, el("div", {}, el("label", { text: "Slow mode", attrs: { for: selectId } }), select), slow);
  if (context.can_open) {
    row.append(el("a", { cls: "button ghost", text: "Open in conversation",
                         attrs: { href: `/c/${context.conversation.id}?at=${context.flagged_seq}` } }));
  }
  return row;
}

async function addContext(card, flag, note) {
  try {
    const context = await api.get(`moderation/flags/${flag.id}/context`);
    card.querySelector(".flag-evidence").replaceWith(contextList(flag, context));
    if (note) card.append(tools(flag, context, note));
  } catch (error) {
    console.warn("parley: flag context", error);
  }
}

function flagCard(flag) {
  const noteId = `note-${flag.id}`;
  const card = el("li", { cls: "flag-card", attrs: { "data-flag": flag.id } },
    el("h2", {}, el("span", { cls: "flag-reason", text: REASONS[flag.reason] || flag.reason }), " ",
      el("span", { text: `Message by ${who(flag.message.sender)} in ${conversationName(flag.conversation)}` })),
    el("p", { cls: "flag-meta", text: `Reported by ${who(flag.reporter)} on ${fullTime(flag.created_at)}${flag.note ? ` · “${flag.note}”` : ""}` }),
    evidence(flag), history(flag));
  let note = null;
  if (flag.status === "open") {
    note = el("textarea", { attrs: { id: noteId, rows: 2, maxlength: 1000 } });
    const dismiss = el("button", { cls: "button", text: "Dismiss", attrs: { type: "button" } });
    const remove = el("button", { cls: "button danger", text: "Remove message", attrs: { type: "button" } });
    const resolve = (action) => () => api.post(`moderation/flags/${flag.id}/resolve`, { action, note: note.value.trim() });
    dismiss.addEventListener("click", act(dismiss, resolve("dismiss"), "Flag dismissed."));
    // Removing a message resolves its other flags too.
    remove.addEventListener("click", act(remove, resolve("remove_message"), "Message removed."));
    card.append(el("div", { cls: "flag-actions" },
      el("div", { cls: "field" }, el("label", { text: "Note (kept in the audit log)", attrs: { for: noteId } }), note),
      dismiss, remove));
  } else {
    card.append(el("p", { cls: "flag-resolution", text: resolutionText(flag) }));
  }
  return { card, flag, note };
}

function auditItem(decision) {
  const about = [];
  if (decision.user) about.push(who(decision.user));
  if (decision.conversation) about.push(`in ${conversationName(decision.conversation)}`);
  if (decision.action === "slow_mode") about.push(decision.slow_mode_seconds ? `${decision.slow_mode_seconds} s` : "off");
  return el("li", {},
    el("strong", { text: ACTIONS[decision.action] || decision.action }),
    el("span", { text: ` ${about.join(" ")} by ${who(decision.moderator)}` }),
    decision.note ? el("span", { text: `: “${decision.note}”` }) : null,
    el("span", { cls: "audit-when", text: fullTime(decision.created_at) }));
}

const EMPTY = {
  open: "The queue is empty. Nothing needs a moderator right now.",
  resolved: "Nothing resolved yet.",
  audit: "No decisions yet.",
};

let loading = 0; // the latest load: an earlier one still in flight must not draw over it

async function load() {
  const token = ++loading;
  for (const tab of ["open", "resolved", "audit"]) $(`tab-${tab}`).setAttribute("aria-selected", String(tab === view));
  $("flag-panel").setAttribute("aria-labelledby", `tab-${view}`);
  $("flag-list").className = view === "audit" ? "audit-list" : "flag-list";
  $("flag-status").textContent = "Loading…";
  try {
    if (view === "audit") {
      const decisions = (await api.get("moderation/decisions", { limit: 100 })).results;
      if (token !== loading) return;
      replaceChildren($("flag-list"), decisions.map(auditItem));
      $("flag-status").textContent = decisions.length ? `${decisions.length} most recent decisions` : EMPTY.audit;
      return;
    }
    const flags = (await api.get("moderation/flags", { status: view, limit: 100 })).results;
    if (token !== loading) return;
    const cards = flags.map(flagCard);
    replaceChildren($("flag-list"), cards.map((c) => c.card));
    $("flag-status").textContent = flags.length ? `${flags.length} ${view === "open" ? "waiting" : "resolved"}` : EMPTY[view];
    await inBatches(cards, 4, ({ card, flag, note }) => addContext(card, flag, note));
  } catch (error) {
    if (token !== loading) return;
    replaceChildren($("flag-list"), []);
    $("flag-status").textContent = `Could not load: ${error.message}`;
  }
}

for (const tab of ["open", "resolved", "audit"]) {
  $(`tab-${tab}`).addEventListener("click", () => { view = tab; load(); });
}
startPendingCount(config);
load();
