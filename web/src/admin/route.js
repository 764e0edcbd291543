// The operator page's way in: the hash route #/admin, and a header link
// shown only to server admins (those whom GET /_plexus/admin/v1/status
// answers). Anyone may open #/admin; a non-admin is told the page is for
// admins only.

import { h, replace } from '../dom.js';
import { operatorPage } from './page.js';

export const ROUTE = '#/admin';

/** operatorLink returns the header link and starts following the route. */
export function operatorLink(app) {
  const link = h('a', { class: 'admin-link', id: 'admin-link', href: ROUTE, hidden: true, 'aria-label': 'Operator page' }, 'Operator');
  let page = null;

  function open() {
    if (page) return;
    app.openRoom(null); // the page takes the room's place
    page = operatorPage(app, { onBack: () => { location.hash = ''; } });
    replace(app.main, page.el);
    app.shell.classList.add('room-open', 'admin-open'); // on a phone: the page, not the list
    link.setAttribute('aria-current', 'page');
  }

  function close() {
    if (!page) return;
    page.close();
    page = null;
    link.removeAttribute('aria-current');
    app.shell.classList.remove('admin-open');
    if (!app.openRoomId) {
      app.shell.classList.remove('room-open');
      replace(app.main, h('p', { class: 'muted empty' }, 'Pick a room, or create one.'));
    }
  }

  const route = () => (location.hash === ROUTE ? open() : close());
  window.addEventListener('hashchange', route);
  // Opening a room leaves the page.
  app.on('open', (roomId) => {
    if (!roomId || !page) return;
    page.close();
    page = null;
    link.removeAttribute('aria-current');
    app.shell.classList.remove('admin-open');
    history.replaceState(null, '', location.pathname + location.search);
  });
  // The shell is being built; route once it is in place.
  queueMicrotask(route);

  app.api.request('GET', '/_plexus/admin/v1/status/history').then(
    () => { link.hidden = false; },
    (err) => { if (err.status !== 403) console.warn('operator status', err); });
  return link;
}
