// s() is dom.js's h() for SVG: elements in the SVG namespace (h() makes
// HTML ones, which a browser does not draw inside <svg>). Text is never
// parsed as markup.

const NS = 'http://www.w3.org/2000/svg';

/** s creates an SVG element: s('circle', {cx: 1, class: 'x', onclick: fn}, child...). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
