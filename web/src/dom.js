// Tiny DOM helpers: the client builds its views with these instead of a
// framework. h() never parses HTML, so text from events is never markup.

/**
 * h creates an element: h('button', {class: 'x', onclick: fn, 'aria-label': 'Call'}, 'text', child).
 * Attributes starting with "on" become listeners; null/false attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k in el && typeof v !== 'string') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** replace swaps el's children for the given ones. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Emitter is a minimal event emitter the store and services share. */
export class Emitter {
  #handlers = new Map();

  on(name, fn) {
    if (!this.#handlers.has(name)) this.#handlers.set(name, new Set());
    this.#handlers.get(name).add(fn);
    return () => this.#handlers.get(name)?.delete(fn);
  }

  emit(name, ...args) {
    for (const fn of [...(this.#handlers.get(name) || [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`handler of ${name} failed`, err);
      }
    }
  }
}

/** localpart returns "alice" for "@alice:example.org". */
export function localpart(userId) {
  const m = /^@([^:]+)/.exec(userId || '');
  return m ? m[1] : userId;
}

/** randomId returns a random URL-safe identifier (call IDs, party IDs, txn IDs). */
export function randomId(bytes = 12) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
