// The shared world's state and wire format, with no three.js and no DOM,
// so it can be tested on its own (world.test.js, run by `node --test`).
//
// The SFU's data room (sfu/internal/data, doc.go) defines the protocol:
//   - a client sends a user packet on topic "plexus.world" with payload
//       {"ts": <unix ms>, "set": {"<key>": <json>}, "del": ["<key>"]}
//     (values within Matrix canonical JSON's range: integers only, so
//     positions travel in millimetres);
//   - a joiner first gets the server's snapshot on "plexus.world.snapshot",
//     and then batched deltas on "plexus.world.delta", both
//       {"entries": {"<key>": {"by": <identity>, "ts": <ms>, "value": <json>}}, "v": 1}
//     with a delete as {"by", "ts", "deleted": true};
//   - every key is last-writer-wins by (ts, then identity byte-wise), and
//     a write equal in both replaces the earlier one.
// Older servers forwarded the sender's own message on "plexus.world"
// (with per-key stamps in "at"): handle applies those as well.

export const TOPIC = 'plexus.world';
export const SNAPSHOT_TOPIC = `${TOPIC}.snapshot`;
export const DELTA_TOPIC = `${TOPIC}.delta`;

/** SEND_INTERVAL_MS paces transforms to at most 30 a second (issue 7). */
export const SEND_INTERVAL_MS = 1000 / 30;

/**
 * compareIdentity orders identities as the server does, byte-wise on
 * their UTF-8: code point order is the same order, and JavaScript's own
 * string comparison (UTF-16 code units) is not past U+FFFF.
 */
export function compareIdentity(a, b) {
  const x = [...a];
  const y = [...b];
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return x.length === y.length ? 0 : (x.length < y.length ? -1 : 1);
}

/** wins reports whether write a replaces b (undefined: nothing yet) under the LWW rule. */
export function wins(a, b) {
  if (!b) return true;
  if (a.ts !== b.ts) return a.ts > b.ts;
  return compareIdentity(a.by, b.by) >= 0;
}

/** mm converts metres to the integer millimetres the world stores. */
export function mm(metres) {
  return Math.round(metres * 1000) || 0; // never -0
}

/** metres converts integer millimetres back. */
export function metres(millimetres) {
  return millimetres / 1000;
}

/**
 * checkValue throws unless v is within canonical JSON's range (spec
 * appendices, "Canonical JSON"): the server refuses a message carrying a
 * float, and it could not become the room's state event anyway.
 */
export function checkValue(v, path = 'value') {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new TypeError(`${path}: ${v} is not an integer within ±(2^53-1)`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkValue(x, `${path}[${i}]`));
    return;
  }
  if (typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) checkValue(x, `${path}.${k}`);
    return;
  }
  throw new TypeError(`${path}: ${typeof v} cannot be sent`);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** encodeMessage is the payload of a packet on TOPIC. */
export function encodeMessage({ ts, set = {}, del = [] }) {
  const msg = { ts };
  if (Object.keys(set).length) {
    for (const [k, v] of Object.entries(set)) checkValue(v, k);
    msg.set = set;
  }
  if (del.length) msg.del = del;
  return encoder.encode(JSON.stringify(msg));
}

/** decodeJSON parses a packet's payload, null if it is not a JSON object. */
export function decodeJSON(bytes) {
  try {
    const v = JSON.parse(typeof bytes === 'string' ? bytes : decoder.decode(bytes));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/** WorldState is this client's copy of the world: key -> {by, ts, value, deleted}. */
export class WorldState {
  constructor() {
    this.entries = new Map();
  }

  /** get is a key's live value, undefined when absent or deleted. */
  get(key) {
    const e = this.entries.get(key);
    return e && !e.deleted ? e.value : undefined;
  }

  /** entry is a key's stamp and value (tombstones included). */
  entry(key) {
    return this.entries.get(key);
  }

  /** keys lists the live keys starting with prefix. */
  keys(prefix = '') {
    const out = [];
    for (const [k, e] of this.entries) if (!e.deleted && k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  /**
   * clear forgets every entry, tombstones included (the call this world
   * belonged to ended, or a new one starts), and returns the keys that
   * had a live value.
   */
  clear() {
    const gone = this.keys();
    this.entries.clear();
    return gone;
  }

  /** apply merges one entry LWW and reports whether it won. */
  apply(key, e) {
    if (typeof key !== 'string' || !e || !Number.isSafeInteger(e.ts) || typeof e.by !== 'string') return false;
    if (!wins(e, this.entries.get(key))) return false;
    this.entries.set(key, e.deleted ? { by: e.by, ts: e.ts, deleted: true } : { by: e.by, ts: e.ts, value: e.value });
    return true;
  }

  /** applyEntries merges a snapshot's or delta's entries and returns the keys that changed. */
  applyEntries(entries) {
    const changed = [];
    for (const [k, e] of Object.entries(entries || {})) if (this.apply(k, e)) changed.push(k);
    return changed;
  }

  /**
   * applySnapshot replaces the state by a snapshot (the world as the
   * server holds it when we join) and returns every key whose value
   * changed or vanished. Writes of our own (by mine) that the snapshot
   * does not know yet are kept: the server took the snapshot before they
   * reached it, and they are on their way to everyone.
   */
  applySnapshot(snap, mine = null) {
    const before = this.entries;
    this.entries = new Map();
    for (const [k, e] of Object.entries(snap?.entries || {})) this.apply(k, e);
    if (mine !== null) {
      for (const [k, e] of before) if (e.by === mine) this.apply(k, e);
    }
    const changed = [];
    for (const k of new Set([...before.keys(), ...this.entries.keys()])) {
      if (JSON.stringify(before.get(k)?.deleted ? undefined : before.get(k)?.value) !==
          JSON.stringify(this.get(k))) changed.push(k);
    }
    return changed;
  }

  /** applyMessage merges a sender's {ts, set, del, at} message (the older relay's form). */
  applyMessage(msg, by) {
    const changed = [];
    const stamp = (k) => (Number.isSafeInteger(msg.at?.[k]) ? msg.at[k] : msg.ts);
    for (const [k, value] of Object.entries(msg.set || {})) {
      if (this.apply(k, { by, ts: stamp(k), value })) changed.push(k);
    }
    for (const k of msg.del || []) {
      if (this.apply(k, { by, ts: stamp(k), deleted: true })) changed.push(k);
    }
    return changed;
  }

  /**
   * handle applies one received data packet (mine: our identity, see
   * applySnapshot). It returns the keys that changed, or null when the
   * topic is not the world's.
   */
  handle(topic, payload, identity, mine = null) {
    if (topic !== TOPIC && topic !== SNAPSHOT_TOPIC && topic !== DELTA_TOPIC) return null;
    const msg = decodeJSON(payload);
    if (!msg) return [];
    if (topic === SNAPSHOT_TOPIC) return this.applySnapshot(msg, mine);
    if (topic === DELTA_TOPIC) return this.applyEntries(msg.entries);
    return Number.isSafeInteger(msg.ts) ? this.applyMessage(msg, identity || '') : [];
  }

  /**
   * stamp is the ts for our next write of key: the clock, but past the
   * key's current stamp, so that our write wins here and at the server
   * even when another writer's clock runs a little ahead of ours.
   */
  stamp(key, now) {
    const cur = this.entries.get(key);
    return cur && cur.ts >= now ? cur.ts + 1 : Math.floor(now);
  }

  /** setLocal records our own write and returns its entry. */
  setLocal(key, value, by, ts) {
    checkValue(value, key);
    const e = { by, ts, value };
    this.entries.set(key, e);
    return e;
  }

  /** deleteLocal records our own delete. */
  deleteLocal(key, by, ts) {
    const e = { by, ts, deleted: true };
    this.entries.set(key, e);
    return e;
  }
}

/**
 * Pacer decides when the changed transforms go out: at most once per
 * interval, and only keys changed since they were last sent. It holds
 * no timers; the caller asks dueIn(now) and schedules one.
 */
export class Pacer {
  constructor(intervalMs = SEND_INTERVAL_MS) {
    this.interval = intervalMs;
    this.last = -Infinity;
    this.pending = new Set();
  }

  /** mark notes that key changed and should be sent. */
  mark(key) {
    this.pending.add(key);
  }

  /** cancel forgets a pending key (it went out another way, e.g. reliably). */
  cancel(key) {
    this.pending.delete(key);
  }

  /** dueIn is how many ms until take would return keys; Infinity with nothing pending. */
  dueIn(now) {
    if (this.pending.size === 0) return Infinity;
    return Math.max(0, this.last + this.interval - now);
  }

  /** take returns the keys to send now (and starts a new interval), or null if it is too soon. */
  take(now) {
    if (this.dueIn(now) > 0) return null;
    const keys = [...this.pending].sort();
    this.pending.clear();
    this.last = now;
    return keys;
  }
}
