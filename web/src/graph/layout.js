// The event graph's layout: a pure function (events in, places out; no
// DOM), so that Node can test it. Each event has a row of its own (room
// for its label), newest on top, in layers by depth: a band per depth
// holds the events that share it. Columns are lanes, as
// `git log --graph` draws them: an event
// continues the lane of the first child that points at it, a second
// prev event (a merge, Server-Server API "Room DAG") opens a lane of its
// own, and lanes that wait for the same event (a fork: concurrent events
// on one parent) run side by side until that parent closes them.

/**
 * @typedef {{event_id: string, depth: number, origin_server_ts: number, prev_events: string[]}} GraphEvent
 * @typedef {{id: string, ev: GraphEvent, row: number, col: number}} Node
 * @typedef {{from: string, to: string, lane: number, kind: 'edge'|'missing'|'backwards'}} Edge
 *   from is the child, to its prev event; lane is the column the edge
 *   runs down in between the two rows. A 'missing' edge points at an
 *   event not loaded; a 'backwards' one at a prev event no deeper
 *   than its child (drawn straight, it runs in no lane).
 */

/** order sorts newest first: by depth, then time, then ID (stable across loads). */
export function order(a, b) {
  return (b.depth - a.depth) || (b.origin_server_ts - a.origin_server_ts) ||
    (a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0);
}

/**
 * layout places events in rows and columns.
 * @param {GraphEvent[]} events any order; duplicates by event_id are dropped
 * @returns {{nodes: Node[], edges: Edge[], bands: {depth: number, first: number, last: number}[],
 *            rows: number, cols: number, byId: Map<string, Node>}}
 */
export function layout(events) {
  const ids = new Set();
  const evs = [];
  for (const ev of events) {
    if (ids.has(ev.event_id)) continue;
    ids.add(ev.event_id);
    evs.push(ev);
  }
  evs.sort(order);
  const depths = new Map(evs.map((e) => [e.event_id, e.depth]));

  const nodes = [];
  const byId = new Map();
  const edges = [];
  // lanes[i] is the event ID lane i runs down towards, or null if free.
  const lanes = [];
  // waiting[i] lists the edges running down lane i towards lanes[i].
  const waiting = [];
  // Lanes closed in the current depth are reused by events only from
  // the next depth on, so that concurrent events of one depth stand side
  // by side, never in one column.
  let closing = [];
  let row = -1;
  let rowDepth = null;
  const bands = []; // {depth, first, last}: the rows of each depth

  // freeLane finds a lane for a node: one free from the rows above.
  const freeLane = () => {
    let i = lanes.indexOf(null);
    if (i < 0) {
      i = lanes.length;
      lanes.push(null);
      waiting.push([]);
    }
    return i;
  };
  // edgeLane finds a lane for an edge leaving this row: a lane closing
  // at this depth will do, since its events and edges are all above.
  const edgeLane = () => {
    const i = closing.find((c) => lanes[c] !== null) ?? freeLane();
    closing = closing.filter((c) => c !== i);
    return i;
  };

  for (const ev of evs) {
    row++;
    if (ev.depth !== rowDepth) {
      rowDepth = ev.depth;
      bands.push({ depth: ev.depth, first: row, last: row });
      for (const i of closing) lanes[i] = null;
      closing = [];
    }
    bands[bands.length - 1].last = row;
    // Every lane running towards this event ends here; the leftmost one
    // becomes its column.
    let col = -1;
    for (let i = 0; i < lanes.length; i++) {
      if (lanes[i] !== ev.event_id) continue;
      for (const e of waiting[i]) e.kind = 'edge';
      waiting[i] = [];
      if (col < 0) {
        col = i;
      } else {
        lanes[i] = ev.event_id; // still taken in this row
        closing.push(i);
      }
    }
    if (col < 0) col = freeLane(); // a forward extremity, or its children are not loaded
    // The column stays taken in this row even if no prev event continues it.
    lanes[col] = ev.event_id;
    closing.push(col);
    const node = { id: ev.event_id, ev, row, col };
    nodes.push(node);
    byId.set(ev.event_id, node);

    let first = true;
    for (const prev of new Set(ev.prev_events || [])) {
      if (!ids.has(prev)) {
        // Not loaded (an older page, or hidden from this user): a stub,
        // with no lane to hold a column all the way down.
        edges.push({ from: ev.event_id, to: prev, lane: col, kind: 'missing' });
        continue;
      }
      if (depths.get(prev) >= ev.depth) {
        // A prev event no deeper than its child: only a malformed (likely
        // rejected) event claims such a depth. A straight line, no lane.
        edges.push({ from: ev.event_id, to: prev, lane: col, kind: 'backwards' });
        continue;
      }
      let lane;
      if (first) {
        lane = col; // the branch goes on in this column
        closing = closing.filter((i) => i !== col);
      } else {
        lane = lanes.indexOf(prev); // join a lane already heading there
        if (lane < 0) lane = edgeLane(); // a merge: the other parent gets a lane of its own
      }
      first = false;
      lanes[lane] = prev;
      const e = { from: ev.event_id, to: prev, lane, kind: 'pending' };
      waiting[lane].push(e);
      edges.push(e);
    }
  }
  return { nodes, edges, bands, rows: row + 1, cols: lanes.length, byId };
}

// How each status is shown: a colour (by class) and, for those who do
// not tell colours apart, a symbol and a word.
const marks = {
  accepted: { symbol: '', word: '' },
  rejected: { symbol: '✕', word: 'rejected' },
  soft_failed: { symbol: '!', word: 'soft-failed' },
  outlier: { symbol: '?', word: 'outlier' },
};

/** statusMark is {symbol, word} for an event's status ('' for accepted ones). */
export function statusMark(status) {
  return marks[status] || { symbol: '?', word: String(status || 'unknown') };
}
