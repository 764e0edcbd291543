// Tests of the graph layout, run by Node from web/graph_test.go
// (TestGraphLayout): `node web/src/graph/layout.test.mjs`. Not bundled.
// Exits non-zero on the first failed check.

import assert from 'node:assert/strict';
import { layout, statusMark } from './layout.js';

let ts = 1000;
const ev = (id, depth, prev, status = 'accepted') => ({
  event_id: id, depth, origin_server_ts: ts++, prev_events: prev, auth_events: [], status,
  type: 'm.room.message', sender: '@a:test',
});

/** check asserts what must hold of any layout of any graph. */
function check(name, events) {
  const g = layout(events);
  const ids = new Set(events.map((e) => e.event_id));
  assert.equal(g.nodes.length, ids.size, `${name}: one node per event`);
  // One event per place.
  const places = new Set(g.nodes.map((n) => `${n.row}/${n.col}`));
  assert.equal(places.size, g.nodes.length, `${name}: two events share a place`);
  // A row per event, in layers by depth: deeper events higher up, the
  // events of one depth in one band of rows, side by side in columns.
  assert.equal(new Set(g.nodes.map((n) => n.row)).size, g.nodes.length, `${name}: two events share a row`);
  for (const a of g.nodes) {
    for (const b of g.nodes) {
      if (a.ev.depth > b.ev.depth) assert.ok(a.row < b.row, `${name}: ${a.id} (depth ${a.ev.depth}) not above ${b.id}`);
      if (a !== b && a.ev.depth === b.ev.depth) assert.notEqual(a.col, b.col, `${name}: ${a.id} and ${b.id} share a depth and a column`);
    }
  }
  for (const band of g.bands) {
    const inBand = g.nodes.filter((n) => n.row >= band.first && n.row <= band.last);
    assert.ok(inBand.every((n) => n.ev.depth === band.depth), `${name}: band of depth ${band.depth}`);
  }
  assert.equal(g.bands.length, new Set(g.nodes.map((n) => n.ev.depth)).size, `${name}: one band per depth`);
  // One edge per prev link; loaded prevs are 'edge' (or 'backwards'), others 'missing'.
  const links = events.reduce((n, e) => n + new Set(e.prev_events).size, 0);
  assert.equal(g.edges.length, links, `${name}: edges`);
  for (const e of g.edges) {
    const from = g.byId.get(e.from);
    assert.ok(from, `${name}: edge from an unknown node`);
    if (!ids.has(e.to)) {
      assert.equal(e.kind, 'missing', `${name}: edge to unloaded ${e.to}`);
      continue;
    }
    const to = g.byId.get(e.to);
    if (e.kind === 'backwards') {
      assert.ok(to.ev.depth >= from.ev.depth, `${name}: backwards edge ${e.from}->${e.to} to a lower depth`);
      continue;
    }
    assert.equal(e.kind, 'edge', `${name}: edge ${e.from}->${e.to}`);
    assert.ok(to.row > from.row, `${name}: edge ${e.from}->${e.to} does not go down`);
    // An edge runs down its lane between the two rows: no other event
    // may sit there, or the picture would lie about who links to whom.
    for (const n of g.nodes) {
      if (n.col === e.lane && n.row > from.row && n.row < to.row) {
        assert.fail(`${name}: edge ${e.from}->${e.to} in lane ${e.lane} runs through ${n.id}`);
      }
    }
  }
  return g;
}

// A fork and a merge, with rejected, soft-failed and outlier events and
// a prev event not loaded.
const forked = [
  ev('$create', 1, []),
  ev('$member', 2, ['$create']),
  ev('$power', 3, ['$member']),
  ev('$a', 4, ['$power']), // the fork: $a and $b on one parent
  ev('$b', 4, ['$power']),
  ev('$rej', 5, ['$a'], 'rejected'),
  ev('$merge', 5, ['$a', '$b']), // the merge
  ev('$soft', 6, ['$merge'], 'soft_failed'),
  ev('$next', 6, ['$merge']),
  ev('$top', 7, ['$next', '$unloaded']),
  ev('$out', 3, [], 'outlier'),
];
{
  const g = check('forked', forked);
  const at = (id) => g.byId.get(id);
  assert.equal(Math.abs(at('$a').row - at('$b').row), 1, 'the fork: one band');
  assert.notEqual(at('$a').col, at('$b').col, 'the fork: two columns');
  assert.ok(at('$merge').row < at('$a').row, 'the merge above its parents');
  const mergeEdges = g.edges.filter((e) => e.from === '$merge');
  assert.deepEqual(mergeEdges.map((e) => [e.to, e.kind]).sort(), [['$a', 'edge'], ['$b', 'edge']]);
  assert.notEqual(mergeEdges[0].lane, mergeEdges[1].lane, 'the merge: two lanes');
  // Both branches above the fork end in $power.
  assert.equal(g.edges.filter((e) => e.to === '$power' && e.kind === 'edge').length, 2);
  // $rej and $merge, $soft and $next: concurrent, side by side.
  assert.notEqual(at('$rej').col, at('$merge').col);
  assert.notEqual(at('$soft').col, at('$next').col);
  assert.deepEqual(g.edges.filter((e) => e.kind === 'missing').map((e) => [e.from, e.to]), [['$top', '$unloaded']]);
  assert.equal(g.rows, forked.length);
  assert.equal(g.bands.length, 7);
  assert.ok(g.cols >= 2 && g.cols <= 4, `forked: ${g.cols} columns`);
  // The input order does not matter.
  const again = layout([...forked].reverse());
  for (const n of g.nodes) {
    const m = again.byId.get(n.id);
    assert.deepEqual([m.row, m.col], [n.row, n.col], `${n.id} placed differently for another input order`);
  }
}

// A wide fork of five, merged by one event with five prev events.
{
  const wide = [ev('$root', 1, [])];
  const tips = [];
  for (let i = 0; i < 5; i++) {
    wide.push(ev(`$w${i}`, 2, ['$root']));
    tips.push(`$w${i}`);
  }
  wide.push(ev('$join', 3, tips));
  const g = check('wide', wide);
  assert.equal(new Set(tips.map((id) => g.byId.get(id).col)).size, 5, 'five concurrent events, five columns');
  assert.equal(g.cols, 5);
}

// A branch that runs long beside the main line before merging (a
// netsplit healed), and a page that starts mid-room (no create event).
{
  const events = [];
  let main = '$m0';
  let side = '$m0';
  events.push(ev('$m0', 10, ['$older']));
  for (let d = 11; d < 20; d++) {
    events.push(ev(`$m${d}`, d, [main]));
    events.push(ev(`$s${d}`, d, [side]));
    main = `$m${d}`;
    side = `$s${d}`;
  }
  events.push(ev('$heal', 20, [main, side]));
  const g = check('netsplit', events);
  assert.equal(g.cols, 2);
  assert.equal(g.edges.filter((e) => e.kind === 'missing').length, 1);
}

// A malformed event claiming a depth no higher than its prev event's.
{
  const g = check('backwards', [ev('$x', 5, []), ev('$bad', 3, ['$x'], 'rejected')]);
  assert.equal(g.edges[0].kind, 'backwards');
  // One depth, the child sorted first (its ID is lower, the times equal).
  const level = [ev('$p', 4, []), ev('$c', 4, ['$p'], 'rejected')];
  level[0].origin_server_ts = level[1].origin_server_ts;
  const h = check('level', level);
  assert.equal(h.edges[0].kind, 'backwards');
}

// Random graphs: every event links to one to three earlier ones, at a
// lower depth but for one in twenty; some events are dropped (as a page
// boundary or history visibility would).
{
  let seed = 7;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const events = [ev('$r0', 1, [])];
    const n = 2 + rand(60);
    for (let i = 1; i < n; i++) {
      const prev = new Set();
      for (let k = 0; k <= rand(3); k++) prev.add(events[rand(events.length)]);
      let depth = Math.max(...[...prev].map((p) => p.depth)) + 1;
      if (rand(20) === 0) depth = 1 + rand(depth + 2); // a malformed depth now and then
      events.push(ev(`$r${i}`, depth, [...prev].map((p) => p.event_id)));
    }
    const page = events.filter(() => rand(10) > 0);
    check(`random ${round}`, page.length ? page : events);
  }
}

assert.deepEqual(statusMark('accepted'), { symbol: '', word: '' });
for (const s of ['rejected', 'soft_failed', 'outlier']) {
  const m = statusMark(s);
  assert.ok(m.symbol && m.word, `${s} has a symbol and a word, not colour alone`);
}

console.log('layout: ok');
