// Parley's service worker: shows the offline path's Web Push notifications
// (docs/notifications.md). Payloads are JSON:
//   {type: "message", conversation, title, body, seq, unread, url, tag}  -> show (or replace) it
//   {type: "close", conversation, seq, unread, url, tag}                 -> read elsewhere: close it
// One notification per conversation: the tag makes the newest replace the older one.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function readPayload(event) {
  if (!event.data) return null;
  try {
    return event.data.json();
  } catch (error) {
    return null; // not ours, or corrupted: nothing sensible to show
  }
}

async function closeNotifications(tag) {
  const shown = await self.registration.getNotifications({ tag });
  shown.forEach((notification) => notification.close());
}

self.addEventListener("push", (event) => {
  const payload = readPayload(event);
  if (!payload || typeof payload.tag !== "string") return;
  if (payload.type === "close") {
    event.waitUntil(closeNotifications(payload.tag));
    return;
  }
  if (payload.type !== "message") return;
  event.waitUntil(
    self.registration.showNotification(payload.title || "Parley", {
      body: payload.body || "",
      tag: payload.tag,
      renotify: true, // a newer message in the same conversation alerts again
      timestamp: Date.now(),
      data: { url: payload.url, conversation: payload.conversation, seq: payload.seq },
    }),
  );
});

// Opens the conversation: focuses a window already showing it, else opens one.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const path = (event.notification.data && event.notification.data.url) || "/";
  const url = new URL(path, self.location.origin).href;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const showing = windows.find((client) => client.url === url || client.url === `${url}/`);
      if (showing) return showing.focus();
      return self.clients.openWindow(url);
    })(),
  );
});
