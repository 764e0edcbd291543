// Matrix Client-Server API over fetch: only the public endpoints any
// client uses. Errors are thrown as MatrixError with the standard errcode.

export class MatrixError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.errcode = body?.errcode || 'M_UNKNOWN';
    this.body = body;
  }
}

const enc = encodeURIComponent;

export class Api {
  /** @param {string} base the homeserver's base URL ('' for this origin) */
  constructor(base = '') {
    this.base = base;
    this.token = null;
    this.txn = 0;
    this.txnPrefix = `${Date.now().toString(36)}`;
  }

  async request(method, path, body, { query, auth = true } = {}) {
    let url = `${this.base}${path}`;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, v);
      url += `?${q}`;
    }
    const headers = {};
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = { error: text }; }
    }
    if (!res.ok) throw new MatrixError(res.status, data);
    return data;
  }

  // Accounts (Client-Server API, "Account registration", "Login").

  /** register runs the registration's user-interactive auth with m.login.dummy. */
  async register(username, password) {
    const body = { username, password, initial_device_display_name: 'Plexus web' };
    try {
      return await this.request('POST', '/_matrix/client/v3/register', body, { auth: false });
    } catch (err) {
      // UIA: a 401 lists the flows and a session; complete the dummy stage.
      if (err.status !== 401 || !err.body?.session) throw err;
      const flows = err.body.flows || [];
      if (!flows.some((f) => f.stages.length === 1 && f.stages[0] === 'm.login.dummy')) {
        throw new MatrixError(403, { errcode: 'M_FORBIDDEN', error: 'registration needs a step this client does not support (a registration token?)' });
      }
      return this.request('POST', '/_matrix/client/v3/register',
        { ...body, auth: { type: 'm.login.dummy', session: err.body.session } }, { auth: false });
    }
  }

  login(user, password) {
    return this.request('POST', '/_matrix/client/v3/login', {
      type: 'm.login.password', identifier: { type: 'm.id.user', user }, password,
      initial_device_display_name: 'Plexus web',
    }, { auth: false });
  }

  logout() { return this.request('POST', '/_matrix/client/v3/logout', {}); }
  whoami() { return this.request('GET', '/_matrix/client/v3/account/whoami'); }

  /** issueSessionCookie asks for the cookie the realtime WebSocket accepts (signalling/internal/cable). */
  issueSessionCookie() { return this.request('POST', '/_plexus/client/v1/session', {}); }
  clearSessionCookie() { return this.request('DELETE', '/_plexus/client/v1/session', undefined, { auth: false }); }

  // Rooms.

  createRoom(opts) { return this.request('POST', '/_matrix/client/v3/createRoom', opts); }
  invite(roomId, userId) { return this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: userId }); }
  join(roomIdOrAlias) { return this.request('POST', `/_matrix/client/v3/join/${enc(roomIdOrAlias)}`, {}); }
  leave(roomId) { return this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}); }
  members(roomId) { return this.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/members`); }

  messages(roomId, from, limit = 30) {
    return this.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/messages`, undefined,
      { query: { dir: 'b', from, limit } });
  }

  send(roomId, type, content) {
    const txn = `${this.txnPrefix}.${++this.txn}`;
    return this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txn)}`, content);
  }

  /** turnServer is GET /voip/turnServer: {uris, username, password, ttl}, or {} without a relay. */
  turnServer() { return this.request('GET', '/_matrix/client/v3/voip/turnServer'); }

  // MatrixRTC (group calls; used by rtc/session.js).

  /** rtcFocus is the first LiveKit livekit_service_url of .well-known's MSC4143 rtc_foci, or null. */
  async rtcFocus() {
    const wk = await this.request('GET', '/.well-known/matrix/client', undefined, { auth: false });
    const focus = (wk?.['org.matrix.msc4143.rtc_foci'] || []).find((f) => f.type === 'livekit' && f.livekit_service_url);
    return focus ? new URL(focus.livekit_service_url, location.href).href.replace(/\/$/, '') : null;
  }

  sendState(roomId, type, stateKey, content) {
    return this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content);
  }

  /** sendStateDelayed schedules a state event (MSC4140) and resolves with {delay_id}. */
  sendStateDelayed(roomId, type, stateKey, content, delayMs) {
    return this.request('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content,
      { query: { 'org.matrix.msc4140.delay': delayMs } });
  }

  /** delayedEvent restarts, cancels or sends a delayed event (MSC4140): action 'restart'|'cancel'|'send'. */
  delayedEvent(delayId, action) {
    return this.request('POST', `/_matrix/client/unstable/org.matrix.msc4140/delayed_events/${enc(delayId)}`, { action });
  }

  roomState(roomId) { return this.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state`); }

  /** openIdToken is an OpenID token proving userId to a third party (the token service). */
  openIdToken(userId) {
    return this.request('POST', `/_matrix/client/v3/user/${enc(userId)}/openid/request_token`, {});
  }

  /** sfuToken asks the token service (lk-jwt-service's legacy /sfu/get) for {url, jwt}. */
  async sfuToken(serviceUrl, body) {
    const res = await fetch(`${serviceUrl}/sfu/get`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new MatrixError(res.status, data);
    return data;
  }
}
