// Small SVG line charts of the operator page, from the status history
// (GET /_plexus/admin/v1/status/history: per source, samples of the
// top-level numbers, oldest first, one every interval_ms).

import { h } from '../dom.js';
import { s } from '../graph/svg.js';

const W = 280;
const H = 110;
const PAD = { left: 34, right: 8, top: 10, bottom: 18 };

/**
 * lineChart draws one value of one source's samples.
 * @param {{title: string, id: string, samples: {ts: number, values?: object, error?: string}[]|undefined,
 *          key: string, intervalMs: number, unavailable?: string}} o
 */
export function lineChart({ title, id, samples, key, intervalMs, unavailable }) {
  const caption = h('figcaption', {}, title);
  const fig = h('figure', { class: 'chart', id, dataset: { key } }, caption);
  if (!samples) {
    fig.append(h('p', { class: 'muted chart-empty' }, unavailable || 'Not running on this server.'));
    return fig;
  }
  const points = samples.map((smp) => ({
    ts: smp.ts, v: smp.error || typeof smp.values?.[key] !== 'number' ? null : smp.values[key],
  }));
  const values = points.filter((p) => p.v !== null).map((p) => p.v);
  if (!values.length) {
    const why = samples.length ? samples[samples.length - 1].error || 'no numbers' : `no samples yet: one every ${Math.round(intervalMs / 1000)} s`;
    fig.append(h('p', { class: 'muted chart-empty' }, `No data (${why}).`));
    return fig;
  }
  const latest = values[values.length - 1];
  const max = Math.max(1, ...values);
  caption.append(h('span', { class: 'chart-now' }, ` ${fmt(latest)} now`));

  // Time runs over the ring's whole span (samples × interval), so a
  // fresh server's few samples sit at the right, as on a strip chart.
  const now = points[points.length - 1].ts;
  const span = Math.max(intervalMs * 59, now - points[0].ts, 1);
  const px = (ts) => PAD.left + ((ts - (now - span)) / span) * (W - PAD.left - PAD.right);
  const py = (v) => PAD.top + (1 - v / max) * (H - PAD.top - PAD.bottom);

  // A failed sample breaks the line rather than drawing a false zero.
  const runs = [];
  let run = [];
  for (const p of points) {
    if (p.v === null) {
      if (run.length) runs.push(run);
      run = [];
    } else {
      run.push(p);
    }
  }
  if (run.length) runs.push(run);

  const minutes = Math.round(span / 60000);
  const svg = s('svg', {
    class: 'chart-svg', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `${title} over the last ${minutes} minutes: ${fmt(latest)} now, at most ${fmt(Math.max(...values))}`,
  },
  s('line', { class: 'axis', x1: PAD.left, y1: py(0), x2: W - PAD.right, y2: py(0) }),
  s('line', { class: 'grid', x1: PAD.left, y1: py(max), x2: W - PAD.right, y2: py(max) }),
  s('text', { class: 'tick', x: PAD.left - 4, y: py(max) + 4, 'text-anchor': 'end' }, fmt(max)),
  s('text', { class: 'tick', x: PAD.left - 4, y: py(0) + 4, 'text-anchor': 'end' }, '0'),
  s('text', { class: 'tick', x: PAD.left, y: H - 4 }, `${minutes} min ago`),
  s('text', { class: 'tick', x: W - PAD.right, y: H - 4, 'text-anchor': 'end' }, 'now'),
  runs.map((r) => (r.length === 1
    ? s('circle', { class: 'point', cx: px(r[0].ts), cy: py(r[0].v), r: 2.5 })
    : s('polyline', { class: 'line', points: r.map((p) => `${px(p.ts).toFixed(1)},${py(p.v).toFixed(1)}`).join(' ') }))));
  fig.append(svg);
  return fig;
}

/** fmt shortens big numbers: 1234 -> 1.2k. */
export function fmt(n) {
  if (typeof n !== 'number') return String(n ?? '–');
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
