// Log in and sign up through the REST auth endpoints. Logging in starts the session
// (cookie) that the app page and the WebSocket authenticate with.
import { api, ApiError } from "./api.js";

const form = document.getElementById("auth-form");
const errorBox = document.getElementById("auth-error");

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = !text;
}

function markInvalid(fields) {
  for (const input of form.querySelectorAll("input")) {
    const invalid = Boolean(fields[input.name]);
    input.toggleAttribute("aria-invalid", invalid);
  }
  const first = form.querySelector("input[aria-invalid]");
  if (first) first.focus();
}

async function submit(event) {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  showError("");
  try {
    if (form.dataset.mode === "signup") {
      await api.post("auth/signup", { username: data.username, password: data.password,
                                      display_name: data.display_name || "" });
    }
    await api.post("auth/login", { username: data.username, password: data.password });
    window.location.assign(form.dataset.next || "/");
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    const text = error.status === 401 ? "Wrong username or password."
      : error.status === 429 ? "Too many attempts. Wait a minute and try again."
      : error.message_for_people;
    showError(text);
    markInvalid(error.fields);
    button.disabled = false;
  }
}

form?.addEventListener("submit", submit);
