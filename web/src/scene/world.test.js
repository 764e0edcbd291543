// Tests of world.js with Node's built-in runner: TestSceneWorld in
// web/scene_test.go runs them with the Go tests (as .mjs copies).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  WorldState, Pacer, wins, compareIdentity, encodeMessage, decodeJSON, checkValue, mm, metres,
  TOPIC, SNAPSHOT_TOPIC, DELTA_TOPIC,
} from './world.js';

const bytes = (v) => new TextEncoder().encode(JSON.stringify(v));

test('LWW: newer ts wins, then greater identity, and an equal write replaces', () => {
  for (const [name, a, b, want] of [
    ['nothing yet', { ts: 1, by: '@a' }, undefined, true],
    ['newer ts', { ts: 2, by: '@a' }, { ts: 1, by: '@b' }, true],
    ['older ts', { ts: 1, by: '@b' }, { ts: 2, by: '@a' }, false],
    ['tie, greater identity', { ts: 1, by: '@b' }, { ts: 1, by: '@a' }, true],
    ['tie, lesser identity', { ts: 1, by: '@a' }, { ts: 1, by: '@b' }, false],
    ['equal', { ts: 1, by: '@a' }, { ts: 1, by: '@a' }, true],
    ['prefix is less', { ts: 1, by: '@a' }, { ts: 1, by: '@ab' }, false],
  ]) {
    assert.equal(wins(a, b), want, name);
  }
});

test('identities compare by UTF-8 bytes, not UTF-16 code units', () => {
  // U+FF61 is 0xEF 0xBD 0xA1 in UTF-8, U+1F600 is 0xF0 ...: the emoji is
  // greater byte-wise, though its UTF-16 surrogate (0xD83D) is less.
  assert.equal(compareIdentity('\uFF61', '\u{1F600}'), -1);
  assert.ok('\uFF61' > '\u{1F600}', 'JavaScript orders them the other way');
  assert.equal(compareIdentity('x', 'x'), 0);
});

test('deltas merge LWW and deletes leave tombstones an older set cannot pass', () => {
  const w = new WorldState();
  assert.deepEqual(w.handle(DELTA_TOPIC, bytes({ v: 1, entries: { 'obj/1': { by: '@a', ts: 10, value: { p: [1, 2, 3] } } } })), ['obj/1']);
  assert.deepEqual(w.get('obj/1'), { p: [1, 2, 3] });
  // Out of order: an older write loses.
  assert.deepEqual(w.handle(DELTA_TOPIC, bytes({ v: 1, entries: { 'obj/1': { by: '@z', ts: 9, value: { p: [0, 0, 0] } } } })), []);
  assert.deepEqual(w.get('obj/1'), { p: [1, 2, 3] });
  assert.deepEqual(w.handle(DELTA_TOPIC, bytes({ v: 1, entries: { 'obj/1': { by: '@a', ts: 11, deleted: true } } })), ['obj/1']);
  assert.equal(w.get('obj/1'), undefined);
  assert.deepEqual(w.keys('obj/'), []);
  assert.deepEqual(w.handle(DELTA_TOPIC, bytes({ v: 1, entries: { 'obj/1': { by: '@b', ts: 10, value: 1 } } })), []);
  assert.equal(w.get('obj/1'), undefined);
});

test('a snapshot replaces the state and reports what changed', () => {
  const w = new WorldState();
  w.handle(DELTA_TOPIC, bytes({ v: 1, entries: {
    'obj/1': { by: '@a', ts: 10, value: 1 },
    'obj/2': { by: '@a', ts: 10, value: 2 },
  } }));
  const changed = w.handle(SNAPSHOT_TOPIC, bytes({ v: 1, entries: {
    'obj/2': { by: '@a', ts: 5, value: 2 }, // same value, older: a snapshot is taken as it is
    'obj/3': { by: '@b', ts: 7, value: 3 },
  } }));
  assert.deepEqual(changed.sort(), ['obj/1', 'obj/3']);
  assert.deepEqual(w.keys(), ['obj/2', 'obj/3']);
  assert.equal(w.entry('obj/2').ts, 5);
});

test('a snapshot keeps our own writes it does not know yet', () => {
  const w = new WorldState();
  w.setLocal('avatar/me', { p: [1, 0, 1] }, 'me', 100); // sent just after joining
  w.setLocal('obj/1', 5, 'me', 90); // older than the snapshot's: the snapshot wins
  w.apply('obj/2', { by: 'other', ts: 50, value: 1 }); // not ours: gone with the snapshot
  const changed = w.handle(SNAPSHOT_TOPIC, bytes({ v: 1, entries: { 'obj/1': { by: 'x', ts: 95, value: 6 } } }), '', 'me');
  assert.deepEqual(changed.sort(), ['obj/1', 'obj/2']);
  assert.deepEqual(w.get('avatar/me'), { p: [1, 0, 1] });
  assert.equal(w.get('obj/1'), 6);
  assert.equal(w.get('obj/2'), undefined);
});

test('clear forgets a call\'s world, tombstones and our own writes too', () => {
  const w = new WorldState();
  w.setLocal('avatar/me', { p: [1, 0, 1] }, 'me', 100);
  w.apply('obj/1', { by: 'other', ts: 50, value: 1 });
  w.apply('obj/2', { by: 'other', ts: 60, deleted: true });
  assert.deepEqual(w.clear(), ['avatar/me', 'obj/1'], 'the keys that had values');
  assert.equal(w.entries.size, 0);
  // The next call's snapshot is all there is: a write of ours from the
  // last call is not kept over it, and an old tombstone blocks nothing.
  const changed = w.handle(SNAPSHOT_TOPIC, bytes({ v: 1, entries: { 'obj/2': { by: 'x', ts: 10, value: 2 } } }), '', 'me');
  assert.deepEqual(changed, ['obj/2']);
  assert.deepEqual(w.keys(), ['obj/2']);
  assert.deepEqual(w.clear(), ['obj/2']);
  assert.deepEqual(w.clear(), [], 'clearing an empty world');
});

test('the older relay form: the sender\'s message with per-key stamps', () => {
  const w = new WorldState();
  const changed = w.handle(TOPIC, bytes({ ts: 20, set: { a: 1, b: 2 }, del: ['c'], at: { b: 30 } }), '@s');
  assert.deepEqual(changed, ['a', 'b', 'c']);
  assert.deepEqual(w.entry('b'), { by: '@s', ts: 30, value: 2 });
  assert.deepEqual(w.entry('c'), { by: '@s', ts: 20, deleted: true });
  assert.equal(w.handle('chat', bytes({}), '@s'), null, 'other topics are not the world\'s');
  assert.deepEqual(w.handle(TOPIC, new TextEncoder().encode('not json'), '@s'), []);
});

test('our writes are stamped past the current one', () => {
  const w = new WorldState();
  assert.equal(w.stamp('k', 100.7), 100);
  w.apply('k', { by: '@fast-clock', ts: 500, value: 1 });
  const ts = w.stamp('k', 100);
  assert.equal(ts, 501);
  w.setLocal('k', 2, '@me', ts);
  assert.ok(!w.apply('k', { by: '@fast-clock', ts: 500, value: 1 }), 'the echo of the older write loses');
  assert.equal(w.get('k'), 2);
});

test('values must be canonical JSON: integers only', () => {
  checkValue({ p: [1, -2, 3], held: 'x', ok: true, none: null });
  for (const bad of [1.5, NaN, Infinity, 2 ** 53, { p: [0.1] }, undefined]) {
    assert.throws(() => checkValue(bad), TypeError, String(bad));
  }
  assert.equal(mm(1.2345), 1235);
  assert.ok(Object.is(mm(-0.0004), 0), 'no negative zero');
  assert.equal(metres(1500), 1.5);
});

test('messages encode as the SFU expects and decode', () => {
  const b = encodeMessage({ ts: 7, set: { 'avatar/@a:s:D': { p: [1, 0, 2] } } });
  assert.deepEqual(decodeJSON(b), { ts: 7, set: { 'avatar/@a:s:D': { p: [1, 0, 2] } } });
  assert.deepEqual(decodeJSON(encodeMessage({ ts: 8, del: ['x'] })), { ts: 8, del: ['x'] });
  assert.throws(() => encodeMessage({ ts: 9, set: { x: 0.5 } }), TypeError);
  assert.equal(decodeJSON(bytes([1, 2])), null);
});

test('the pacer sends at most once per interval, only what changed', () => {
  const p = new Pacer(1000 / 30);
  assert.equal(p.dueIn(0), Infinity, 'nothing to send');
  p.mark('a');
  assert.equal(p.dueIn(0), 0);
  assert.deepEqual(p.take(0), ['a']);
  assert.equal(p.take(1), null, 'nothing changed');
  p.mark('b');
  p.mark('a');
  p.mark('b');
  assert.ok(Math.abs(p.dueIn(10) - (1000 / 30 - 10)) < 1e-9);
  assert.equal(p.take(10), null, 'too soon');
  assert.deepEqual(p.take(34), ['a', 'b']);
  p.mark('c');
  p.cancel('c');
  assert.equal(p.dueIn(100), Infinity);
  // 30 Hz: marking every ms for a second sends at most 30 times.
  const q = new Pacer(1000 / 30);
  let sends = 0;
  for (let t = 0; t < 1000; t++) {
    q.mark('k');
    if (q.take(t)) sends++;
  }
  assert.ok(sends <= 30 && sends >= 29, `${sends} sends in a second`);
});
