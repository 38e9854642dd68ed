// This browser as a Parley device (CONTRACT, "Devices"): registered once per user and kept
// in localStorage, registered again if the server no longer knows it. Also offers
// notifications: Web Push when the server has a VAPID key and the service worker
// (static/sw.js) is there, and the in-tab Notification API everywhere.
import { api } from "./api.js";

const deviceKey = (userId) => `parley:device:${userId}`;

function describeBrowser() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrom(e|ium)\//.test(ua) ? "Chrome"
    : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

export async function registerDevice(userId) {
  const device = await api.post("devices", { name: describeBrowser(), platform: "web" });
  localStorage.setItem(deviceKey(userId), device.id);
  return device.id;
}

/** This browser's device id for the user, if it registered one. */
export const thisDevice = (userId) => localStorage.getItem(deviceKey(userId));

/** This browser is no longer that device (it was logged out): the next visit registers anew. */
export function forgetDevice(userId) {
  localStorage.removeItem(deviceKey(userId));
}

export async function ensureDevice(userId) {
  return localStorage.getItem(deviceKey(userId)) || registerDevice(userId);
}

export async function deviceIsKnown(deviceId) {
  const devices = await api.get("devices");
  return devices.some((d) => d.id === deviceId);
}

// --- Web Push ----------------------------------------------------------------------------------

function keyBytes(base64url) {
  const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

async function saveSubscription(deviceId, subscription) {
  const { endpoint, keys } = subscription.toJSON();
  const marker = `parley:push:${deviceId}`;
  if (localStorage.getItem(marker) === endpoint) return;
  await api.post(`devices/${deviceId}/push-subscription`, { endpoint, keys });
  localStorage.setItem(marker, endpoint);
}

// An endpoint belongs to the account that registered it: the server answers 409 when another
// account holds this browser profile's endpoint (a shared browser, signed in as someone else
// now). Unsubscribing gives the profile a new endpoint, which is then ours.
async function saveOrRenew(registration, deviceId, subscription, vapidPublicKey) {
  try {
    await saveSubscription(deviceId, subscription);
  } catch (error) {
    if (error.status !== 409) throw error;
    await subscription.unsubscribe();
    const fresh = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: keyBytes(vapidPublicKey),
    });
    await saveSubscription(deviceId, fresh);
  }
}

/**
 * Registers the service worker if the server ships one, and shows `button` to turn on
 * notifications when they are not on yet: Web Push where the browser and the server support
 * it, and in any case the Notification API, which the app uses itself while its tab is hidden
 * (notify.js), no push service needed. Does nothing (quietly) where neither is possible.
 */
export async function setUpPush({ button, deviceId, push, onEnabled }) {
  if (!("Notification" in window) || Notification.permission === "denied") return;
  let registration = null;
  if (push.service_worker && "serviceWorker" in navigator) {
    try {
      registration = await navigator.serviceWorker.register(push.service_worker);
    } catch (error) {
      console.info("parley: no service worker", error);
    }
  }
  const pushable = Boolean(registration && push.vapid_public_key && "PushManager" in window);
  if (pushable) {
    const existing = await registration.pushManager.getSubscription();
    if (existing) {
      await saveOrRenew(registration, deviceId, existing, push.vapid_public_key).catch((e) => console.warn("parley:", e));
      return;
    }
  } else if (Notification.permission === "granted") {
    return; // in-tab notifications are on; there is no push to add
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    button.hidden = true;
    try {
      if ((await Notification.requestPermission()) !== "granted") return;
      if (pushable) {
        const subscription = await registration.pushManager.subscribe({
          userVisibleOnly: true, applicationServerKey: keyBytes(push.vapid_public_key),
        });
        await saveOrRenew(registration, deviceId, subscription, push.vapid_public_key);
      }
      onEnabled?.(null);
    } catch (error) {
      button.hidden = false; // let the person try again later
      onEnabled?.(error);
    }
  });
}
