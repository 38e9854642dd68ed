/**
 * Starting a conversation, from the list's header: a direct chat with someone found by name, a
 * group of people picked by name, or a public channel found, joined or created.
 */
import { api } from "./api.js";
import { el, pickRow, replaceChildren, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

async function searchUsers(text) {
  if (!text.trim()) return [];
  return (await api.get("users", { search: text.trim() })).results;
}

/**
 * Wires the three dialogs. Each conversation made or joined goes into `store`, then
 * `openConversation(id)` shows it; `loadMembers(conversation)` names a direct chat first.
 * Returns `joinChannel(info)`, which a channel's own "Join channel" bar uses too.
 */
export function installNewChatDialogs({ store, openConversation, loadMembers }) {
  async function startDirect(user) {
    try {
      const info = await api.post("conversations", { kind: "direct", members: [user.id] });
      store.upsertConversation(info);
      $("direct-dialog").close();
      await loadMembers(store.get(info.id)).catch(() => {});
      openConversation(info.id);
    } catch (error) {
      toast(error.message_for_people || error.message);
    }
  }

  $("new-direct").addEventListener("click", () => {
    $("direct-search").value = "";
    replaceChildren($("direct-results"), []);
    $("direct-dialog").showModal();
  });
  $("direct-search").addEventListener("input", debounce(async (event) => {
    const users = await searchUsers(event.target.value).catch(() => []);
    replaceChildren($("direct-results"), users.length
      ? users.map((u) => pickRow(u.display_name, `@${u.username}`, "Chat", () => startDirect(u), { label: `Chat with ${u.display_name}` }))
      : [el("li", { cls: "pick-sub", text: event.target.value.trim() ? "Nobody found." : "" })]);
  }, 250));

  const groupPicks = new Map();
  function renderGroupPicks() {
    $("group-picked").textContent = groupPicks.size ? [...groupPicks.values()].map((u) => u.display_name).join(", ") : "nobody yet";
  }
  $("new-group").addEventListener("click", () => {
    groupPicks.clear();
    renderGroupPicks();
    $("group-title").value = "";
    $("group-search").value = "";
    $("group-error").hidden = true;
    replaceChildren($("group-results"), []);
    $("group-dialog").showModal();
  });
  $("group-search").addEventListener("input", debounce(async (event) => {
    const users = await searchUsers(event.target.value).catch(() => []);
    replaceChildren($("group-results"), users.map((u) => pickRow(u.display_name, `@${u.username}`, groupPicks.has(u.id) ? "Added" : "Add", (e) => {
      groupPicks.set(u.id, u);
      e.target.textContent = "Added";
      e.target.disabled = true;
      renderGroupPicks();
    }, { disabled: groupPicks.has(u.id) })));
  }, 250));
  $("group-form").addEventListener("submit", async (event) => {
    if (event.submitter?.value !== "create") return;
    event.preventDefault();
    try {
      const info = await api.post("conversations", { kind: "group", title: $("group-title").value.trim(), members: [...groupPicks.keys()] });
      store.upsertConversation(info);
      $("group-dialog").close();
      openConversation(info.id);
    } catch (error) {
      $("group-error").textContent = error.message_for_people || error.message;
      $("group-error").hidden = false;
    }
  });

  async function listChannels(text = "") {
    try {
      const page = await api.get("channels", { search: text.trim() || undefined });
      replaceChildren($("channel-results"), page.results.length ? page.results.map((info) => pickRow(
        info.title, `${info.member_count} member${info.member_count === 1 ? "" : "s"}`,
        info.me ? "Open" : "Join", () => joinChannel(info))) : [el("li", { cls: "pick-sub", text: "No public channels found." })]);
    } catch (error) {
      replaceChildren($("channel-results"), [el("li", { cls: "pick-sub", text: error.message })]);
    }
  }

  async function joinChannel(info) {
    try {
      const joined = info.me ? info : await api.post(`conversations/${info.id}/join`);
      store.upsertConversation(joined);
      $("channels-dialog").close();
      openConversation(joined.id);
    } catch (error) {
      toast(error.message);
    }
  }

  $("browse-channels").addEventListener("click", () => {
    $("channel-search").value = "";
    listChannels();
    $("channels-dialog").showModal();
  });
  $("channel-search").addEventListener("input", debounce((event) => listChannels(event.target.value), 250));
  $("channel-create").addEventListener("click", async () => {
    try {
      const info = await api.post("conversations", { kind: "channel", title: $("channel-title").value.trim(), public: $("channel-public").checked });
      store.upsertConversation(info);
      $("channels-dialog").close();
      openConversation(info.id);
    } catch (error) {
      toast(error.message_for_people || error.message);
    }
  });
  return { joinChannel };
}
