// The settings page: display name, password, devices (each can be logged out), and the theme
// of this browser (theme.js applies it before the first paint on every page).
import { api } from "./api.js";
import { shortWhen } from "./dates.js";
import { forgetDevice, thisDevice } from "./device.js";
import { startPendingCount } from "./pending.js";
import { el, replaceChildren, toast } from "./ui.js";

const config = JSON.parse(document.getElementById("parley-config").textContent);
const $ = (id) => document.getElementById(id);
const THEME_KEY = "parley:theme";

function showResult(prefix, { error = "", ok = "" }) {
  $(`${prefix}-error`).textContent = error;
  $(`${prefix}-error`).hidden = !error;
  $(`${prefix}-ok`).textContent = ok;
}

function markInvalid(form, fields) {
  for (const input of form.querySelectorAll("input[name]")) input.toggleAttribute("aria-invalid", Boolean(fields[input.name]));
  form.querySelector("input[aria-invalid]")?.focus();
}

$("profile-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  try {
    const me = await api.patch("me", { display_name: $("display-name").value.trim() });
    document.querySelector(".whoami").textContent = me.display_name;
    markInvalid(form, {});
    showResult("profile", { ok: "Saved. This is the name people see now." });
  } catch (error) {
    markInvalid(form, error.fields);
    showResult("profile", { error: error.message_for_people });
  }
});

$("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = Object.fromEntries(new FormData(form));
  try {
    await api.post("me/password", { current_password: data.current_password, new_password: data.new_password });
    form.reset();
    markInvalid(form, {});
    showResult("password", { ok: "Password changed. Your other browsers and apps were logged out." });
  } catch (error) {
    markInvalid(form, error.fields);
    showResult("password", { error: error.message_for_people });
  }
});

// --- devices ------------------------------------------------------------------------------------
async function logOut(device) {
  const mine = device.id === thisDevice(config.me.id);
  try {
    await api.delete(`devices/${device.id}`);
  } catch (error) {
    if (error.status !== 404) {
      toast(error.message);
      return;
    }
  }
  if (mine) {
    forgetDevice(config.me.id);
    await api.post("auth/end-session").catch(() => {});
    window.location.assign("/login");
    return;
  }
  $("devices-status").textContent = `${device.name || "That device"} was logged out.`;
  await loadDevices();
  $("device-list").querySelector("button")?.focus();
}

function deviceRow(device) {
  const name = device.name || "Unnamed device";
  const mine = device.id === thisDevice(config.me.id);
  const seen = device.last_seen_at ? `last connected ${shortWhen(device.last_seen_at)}` : "never connected";
  const button = el("button", {
    cls: "button small", text: mine ? "Log out this browser" : "Log out",
    attrs: { type: "button", "aria-label": mine ? "Log out this browser" : `Log out ${name}` },
  });
  button.addEventListener("click", () => logOut(device));
  return el("li", { attrs: { "data-device": device.id } },
    el("span", {},
      el("span", { text: name }), mine ? el("span", { cls: "this-device", text: "This browser" }) : null,
      el("span", { cls: "device-sub", text: `Added ${shortWhen(device.created_at)} · ${seen}` })),
    button);
}

async function loadDevices() {
  try {
    const devices = await api.get("devices");
    replaceChildren($("device-list"), devices.map(deviceRow));
    if (!devices.length) $("devices-status").textContent = "No devices yet.";
  } catch (error) {
    $("devices-status").textContent = `Could not load your devices: ${error.message}`;
  }
}

// --- theme --------------------------------------------------------------------------------------
function applyTheme(theme) {
  if (theme === "light" || theme === "dark") {
    localStorage.setItem(THEME_KEY, theme);
    document.documentElement.dataset.theme = theme;
  } else {
    localStorage.removeItem(THEME_KEY);
    delete document.documentElement.dataset.theme;
  }
}

const chosen = localStorage.getItem(THEME_KEY) || "system";
for (const radio of document.querySelectorAll("input[name=theme]")) {
  radio.checked = radio.value === chosen;
  radio.addEventListener("change", () => applyTheme(radio.value));
}

loadDevices();
startPendingCount(config);
