// The moderators' pending count in the top bar ("Moderation 3"): open flags, refreshed every
// `moderation_refresh_seconds` (a setting) while the page is visible, and on demand.
import { api } from "./api.js";

let timer = null;

export async function refreshPendingCount() {
  const badge = document.getElementById("pending-count");
  if (!badge) return;
  try {
    const { count } = await api.get("moderation/flags", { status: "open", limit: 1 });
    badge.hidden = !count;
    badge.querySelector("[aria-hidden]").textContent = count > 99 ? "99+" : String(count);
    badge.querySelector(".visually-hidden").textContent = `, ${count} flag${count === 1 ? "" : "s"} waiting`;
  } catch (error) {
    console.warn("parley: pending count", error);
  }
}

export function startPendingCount(config) {
  if (!config.moderator || timer) return;
  refreshPendingCount();
  timer = setInterval(() => {
    if (document.visibilityState === "visible") refreshPendingCount();
  }, config.limits.moderation_refresh_seconds * 1000);
}
