// Runs the stock @rails/actioncable consumer against a Plexus cable
// server: node consumer.js <ws url> <identifier JSON>
//
// It subscribes with the given identifier and prints one JSON line per
// event: {"event":"connected"}, {"event":"rejected"} or
// {"event":"received","message":...}, exiting after the first message
// that carries a timeline event.
"use strict";

// The consumer expects browser globals: a WebSocket implementation (the
// ws package stands in for the browser's) and window-level event
// listeners, which its connection monitor uses for visibilitychange.
const WebSocket = require("ws");
globalThis.addEventListener = globalThis.addEventListener || (() => {});
globalThis.removeEventListener = globalThis.removeEventListener || (() => {});

const ActionCable = require("@rails/actioncable");
ActionCable.adapters.WebSocket = WebSocket;

const [url, identifier] = process.argv.slice(2);
if (!url || !identifier) {
  console.error("usage: node consumer.js <ws url> <identifier JSON>");
  process.exit(2);
}

const print = (v) => process.stdout.write(JSON.stringify(v) + "\n");
const consumer = ActionCable.createConsumer(url);
consumer.subscriptions.create(JSON.parse(identifier), {
  connected() {
    print({ event: "connected", protocol: consumer.connection.getProtocol() });
  },
  rejected() {
    print({ event: "rejected" });
    consumer.disconnect();
    process.exit(1);
  },
  received(message) {
    print({ event: "received", message });
    const timeline = message && message.timeline && message.timeline.events;
    if (timeline && timeline.length > 0) {
      consumer.disconnect();
      process.exit(0);
    }
  },
});

setTimeout(() => {
  console.error("no event within 30 s");
  process.exit(1);
}, 30000).unref();
