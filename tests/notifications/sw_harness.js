// Runs static/sw.js in a stand-in service worker global and prints what it did, as JSON.
// Usage: node sw_harness.js <path to sw.js> '<scenario JSON>'
// scenario: {windows: [url...], events: [{type: "push", data: <payload or raw string>} |
//                                        {type: "notificationclick", data: <notification data>}]}
"use strict";
const fs = require("fs");
const vm = require("vm");

const [swPath, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
const log = [];
const listeners = {};
const notifications = [];

const self = {
  location: { origin: "https://parley.test" },
  addEventListener: (type, listener) => { listeners[type] = listener; },
  skipWaiting: () => {},
  registration: {
    async showNotification(title, options) {
      // As browsers do: a notification with the tag of a shown one replaces it.
      notifications.filter((n) => !n.closed && n.tag === options.tag).forEach((n) => { n.closed = true; });
      notifications.push({ tag: options.tag, closed: false });
      log.push(["show", title, options]);
    },
    async getNotifications(filter) {
      return notifications.filter((n) => !n.closed && n.tag === filter.tag).map((n) => ({
        close: () => { n.closed = true; log.push(["close", n.tag]); },
      }));
    },
  },
  clients: {
    claim: async () => {},
    matchAll: async () => (scenario.windows || []).map((url) => ({
      url, focus: async () => { log.push(["focus", url]); },
    })),
    openWindow: async (url) => { log.push(["open", url]); },
  },
};

vm.runInNewContext(fs.readFileSync(swPath, "utf8"), { self, URL, console });

(async () => {
  for (const spec of scenario.events) {
    const pending = [];
    const event = { waitUntil: (promise) => pending.push(promise) };
    if (spec.type === "push") {
      event.data = { json: () => (typeof spec.data === "string" ? JSON.parse(spec.data) : spec.data) };
    } else {
      event.notification = { data: spec.data, close: () => log.push(["dismiss"]) };
    }
    listeners[spec.type](event);
    await Promise.all(pending);
  }
  console.log(JSON.stringify({ log, open: notifications.filter((n) => !n.closed).map((n) => n.tag) }));
})();
