// The application: the session (access token in localStorage, session
// cookie for the realtime connection), the services built on it and the
// shell that lays out the views.

import { h, replace, Emitter } from './dom.js';
import { Api } from './api.js';
import { Store } from './store.js';
import { Realtime } from './realtime.js';
import { CallManager } from './call/manager.js';
import { installCallDebug } from './call/debug.js';
import { loadSettings } from './settings.js';
import { loginView } from './views/login.js';
import { roomListView } from './views/roomlist.js';
import { roomView } from './views/room.js';
import { callLayer } from './views/callview.js';
import { settingsDialog } from './views/settings.js';
import { operatorLink } from './admin/route.js';

const SESSION_KEY = 'plexus.session';

export class App extends Emitter {
  constructor(root) {
    super();
    this.root = root;
    this.api = new Api('');
    this.settings = loadSettings();
    this.store = null;
    this.realtime = null;
    this.calls = null;
    this.openRoomId = null;
    this.current = null; // the open room's view
  }

  async start() {
    const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (saved?.access_token) {
      this.api.token = saved.access_token;
      try {
        await this.api.whoami();
        return await this.begin(saved);
      } catch (err) {
        if (err.errcode !== 'M_UNKNOWN_TOKEN') {
          replace(this.root, h('p', { class: 'error boot' }, `Cannot reach the server: ${err.message}`));
          return;
        }
        localStorage.removeItem(SESSION_KEY);
        this.api.token = null;
      }
    }
    replace(this.root, loginView(this.api, (res) => this.begin(res)));
  }

  /** begin runs the signed-in client for a /login or /register answer. */
  async begin(session) {
    this.api.token = session.access_token;
    // The realtime WebSocket cannot carry an Authorization header: the
    // server seals our token into an HttpOnly cookie it accepts instead.
    await this.api.issueSessionCookie();
    localStorage.setItem(SESSION_KEY, JSON.stringify({
      access_token: session.access_token, user_id: session.user_id, device_id: session.device_id,
    }));
    this.store = new Store(session.user_id);
    this.realtime = new Realtime(this.store);
    this.calls = new CallManager(this.api, this.store, () => this.settings);
    installCallDebug(this.calls);
    this.renderShell(session.user_id);
    this.realtime.start();
  }

  renderShell(userId) {
    const status = h('span', { class: 'conn', id: 'conn-status', role: 'status' }, 'connecting…');
    this.realtime.on('status', (up) => {
      status.textContent = up ? 'online' : 'reconnecting…';
      status.classList.toggle('up', up);
    });
    this.realtime.on('error', (err) => console.warn(err));
    this.main = h('main', { class: 'main', id: 'main' },
      h('p', { class: 'muted empty' }, 'Pick a room, or create one.'));
    this.shell = h('div', { class: 'shell' },
      h('header', { class: 'topbar' },
        h('span', { class: 'brand' }, 'Plexus'),
        h('span', { class: 'me', id: 'me' }, userId),
        status,
        operatorLink(this),
        h('button', {
          class: 'icon', id: 'open-settings', 'aria-label': 'Settings',
          onclick: () => { const d = settingsDialog(this); document.body.append(d); d.showModal(); },
        }, 'Settings'),
        h('button', { id: 'logout', onclick: () => this.logout() }, 'Log out')),
      h('div', { class: 'body' },
        h('nav', { class: 'sidebar', 'aria-label': 'Rooms' }, roomListView(this)),
        this.main),
      callLayer(this));
    replace(this.root, this.shell);
  }

  /** openRoom shows roomId (null: the room list, on a phone). */
  openRoom(roomId) {
    if (this.openRoomId === roomId) return;
    this.current?.close();
    this.current = null;
    this.openRoomId = roomId;
    this.shell.classList.toggle('room-open', !!roomId);
    if (!roomId) {
      this.realtime.closeRoom();
      replace(this.main, h('p', { class: 'muted empty' }, 'Pick a room, or create one.'));
    } else {
      this.realtime.openRoom(roomId);
      this.current = roomView(this.store.room(roomId), this);
      replace(this.main, this.current.el);
    }
    this.emit('open', roomId);
  }

  async logout() {
    this.calls.current?.hangup();
    try { await this.api.logout(); } catch (err) { console.warn(err); }
    try { await this.api.clearSessionCookie(); } catch (err) { console.warn(err); }
    localStorage.removeItem(SESSION_KEY);
    this.realtime.stop();
    location.reload();
  }
}
