// The members part of the conversation details panel: who is in it (with presence and role),
// adding people by name, removing, and the owner's admin/member switch. What I may do comes
// from the server (`me.can`, the roles table in messaging/roles.py); the only thing decided
// here is which buttons to show for it.
import { api } from "./api.js";
import { lastSeen } from "./dates.js";
import { el, pickRow, replaceChildren } from "./ui.js";

const ROLE_LABEL = { owner: "Owner", admin: "Admin", member: "" };
const RANK = { owner: 3, admin: 2, member: 1 };

export class MemberList {
  /**
   * @param {object} options
   * @param {HTMLElement} options.list  the <ul> of members
   * @param {HTMLElement} options.count  where "N members" goes
   * @param {{section: HTMLElement, input: HTMLInputElement, results: HTMLElement}} options.add
   * @param {{id: number}} options.me
   * @param {(text: string) => void} options.say  a toast
   * @param {(users: object[]) => void} options.loaded  the members' users, for the store
   */
  constructor({ list, count, add, me, say, loaded }) {
    Object.assign(this, { list, count, add, me, say, loaded });
    this.conversation = null;
    this.members = [];
    this.searchTimer = null;
    add.input.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.findPeople(add.input.value), 250);
    });
  }

  can(action) {
    return Boolean(this.conversation?.info.me?.can?.includes(action));
  }

  async load(conversation) {
    this.conversation = conversation;
    this.add.section.hidden = !this.can("add_members");
    const page = await api.get(`conversations/${conversation.id}/members`, { limit: 200 });
    if (this.conversation !== conversation) return;
    this.members = page.results;
    this.loaded(page.results.map((m) => m.user));
    this.render();
  }

  reset() {
    this.conversation = null;
    this.members = [];
    this.add.input.value = "";
    replaceChildren(this.add.results, []);
    replaceChildren(this.list, []);
  }

  render() {
    const info = this.conversation.info;
    const shown = this.members.length;
    this.count.textContent = `${info.member_count} member${info.member_count === 1 ? "" : "s"}` +
      (shown < info.member_count ? ` (showing ${shown})` : "");
    const myRole = info.me?.role;
    replaceChildren(this.list, this.members.map((member) => this.row(member, myRole)));
  }

  row(member, myRole) {
    const { user, role } = member;
    const mine = user.id === this.me.id;
    const name = mine ? `${user.display_name} (you)` : user.display_name;
    const presence = member.online === true ? "Online" : member.online === false ? lastSeen(member.last_seen_at) : "";
    const actions = el("span", { cls: "member-actions" });
    if (!mine && this.can("set_role") && role !== "owner") {
      const next = role === "admin" ? "member" : "admin";
      actions.append(this.button(next === "admin" ? "Make admin" : "Make member", user,
                                 () => this.setRole(user, next)));
    }
    if (!mine && this.can("remove_member") && RANK[role] < RANK[myRole]) {
      actions.append(this.button("Remove", user, () => this.remove(user)));
    }
    return el("li", { cls: "member", attrs: { "data-user": user.id } },
      el("span", { cls: "presence-dot", attrs: { "data-online": member.online === null ? "unknown" : String(member.online), "aria-hidden": "true" } }),
      el("span", { cls: "member-name" },
        el("span", { text: name }),
        el("span", { cls: "pick-sub", text: ` @${user.username}` }),
        presence ? el("span", { cls: "member-presence", text: ` · ${presence}` }) : null),
      ROLE_LABEL[role] ? el("span", { cls: "member-role", text: ROLE_LABEL[role] }) : null,
      actions);
  }

  button(label, user, onClick) {
    const button = el("button", { cls: "button small", text: label,
                                  attrs: { type: "button", "aria-label": `${label}: ${user.display_name}` } });
    button.addEventListener("click", onClick);
    return button;
  }

  async findPeople(text) {
    if (!text.trim()) {
      replaceChildren(this.add.results, []);
      return;
    }
    try {
      const { results } = await api.get("users", { search: text.trim() });
      const inside = new Set(this.members.map((m) => m.user.id));
      replaceChildren(this.add.results, results.length ? results.map((u) => pickRow(
        u.display_name, `@${u.username}`, inside.has(u.id) ? "Member" : "Add",
        () => this.addPerson(u), { disabled: inside.has(u.id), label: `Add ${u.display_name}` },
      )) : [el("li", { cls: "pick-sub", text: "Nobody found." })]);
    } catch (error) {
      replaceChildren(this.add.results, [el("li", { cls: "pick-sub", text: error.message })]);
    }
  }

  async addPerson(user) {
    try {
      await api.post(`conversations/${this.conversation.id}/members`, { user_ids: [user.id] });
      this.say(`${user.display_name} was added.`);
      this.add.input.value = "";
      replaceChildren(this.add.results, []);
      await this.load(this.conversation);
      this.add.input.focus();
    } catch (error) {
      this.say(error.message_for_people || error.message);
    }
  }

  async remove(user) {
    if (!window.confirm(`Remove ${user.display_name} from this conversation?`)) return;
    try {
      await api.delete(`conversations/${this.conversation.id}/members/${user.id}`);
      this.say(`${user.display_name} was removed.`);
      await this.load(this.conversation);
    } catch (error) {
      this.say(error.message_for_people || error.message);
    }
  }

  async setRole(user, role) {
    try {
      await api.patch(`conversations/${this.conversation.id}/members/${user.id}`, { role });
      this.say(role === "admin" ? `${user.display_name} is now an admin.` : `${user.display_name} is no longer an admin.`);
      await this.load(this.conversation);
    } catch (error) {
      this.say(error.message_for_people || error.message);
    }
  }
}
