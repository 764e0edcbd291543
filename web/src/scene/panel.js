// The shared 3D scene beside the call (issue 7): everyone in the room's
// call sees the same floor, the same movable objects, and one avatar per
// participant. State travels as world messages over the SFU's data
// channels (world.js has the format): transforms at most 30 times a
// second on the lossy channel while something moves, pick-up, drop, join
// and leave on the reliable one. The SFU keeps the world for late joiners
// and saves it into the Matrix room (org.plexus.world) for the next call.
//
// Opening the panel joins the call data-only when not in it already; the
// call panel can add camera and microphone to the same session. The world
// is the session's (tracker.js): kept from the moment the call connects,
// however it was joined; the panel attaches to it while open.

import { h, localpart } from '../dom.js';
import { rtcSession, identityUser } from '../rtc/session.js';
import { TOPIC, Pacer, encodeMessage, compareIdentity, mm, metres } from './world.js';
import { SceneView, OBJECTS, clamp } from './view.js';
import '../scene.css';

const SPEED = 2; // metres a second, walking
const TURN = 10; // radians a second, turning toward where one walks
const DIRS = {
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
};
const HOME = new Map(OBJECTS.map((o) => [o.key, o.home.map(mm)]));
const NAMES = new Map(OBJECTS.map((o) => [o.key, o.name]));
const REACH = 2; // metres: how near an object must be to pick it up by keyboard
const CARRY = 0.6; // metres in front of the avatar a carried object goes

const now = () => performance.timeOrigin + performance.now(); // comparable across tabs of one machine

/** isPos reports whether p is a position as the world holds one: [x, y, z] integer mm. */
function isPos(p) {
  return Array.isArray(p) && p.length === 3 && p.every(Number.isSafeInteger);
}

/** spawnPoint is where identity's avatar starts (mm): a stable spot on a circle. */
function spawnPoint(identity) {
  let hash = 7;
  for (const c of identity) hash = (hash * 33 + c.codePointAt(0)) >>> 0;
  const a = ((hash % 3600) / 3600) * 2 * Math.PI;
  return [mm(Math.cos(a) * 2.6), 0, mm(Math.sin(a) * 2.6)];
}

export function scenePanel(el, { room, app }) {
  const session = rtcSession(app, room.id);
  const tracker = session.world;
  const { world } = tracker;
  const pacer = new Pacer();
  const me = () => session.room?.localParticipant.identity || null;
  let joinedHere = false; // this panel made the data-only join
  let sendTimer = null;
  let view = null;

  const status = h('p', { class: 'scene-status', id: 'scene-status', role: 'status' });
  const error = h('p', { class: 'error', role: 'alert' });
  const note = h('p', { class: 'scene-note muted', id: 'scene-note', role: 'status' }); // what the last action did
  const fail = (err) => { console.warn(err); error.textContent = err.message || String(err); };
  const joinButton = h('button', {
    class: 'primary', id: 'scene-join', 'aria-label': 'Enter the scene',
    onclick: () => enter().catch(fail),
  }, 'Enter');
  const leaveButton = h('button', {
    class: 'danger', id: 'scene-leave', 'aria-label': 'Leave the scene',
    onclick: () => leave().catch(fail),
  }, 'Leave');
  const stage = h('div', {
    class: 'scene-stage', id: 'scene-stage', tabindex: '0', role: 'application',
    'aria-label': 'Shared 3D scene. Arrow keys or W A S D move your avatar; Space or E picks up ' +
      'the nearest object and puts it down. Or drag an object with the pointer, and click the floor to walk there.',
  });
  const hint = h('p', { class: 'scene-hint muted' },
    'Arrows/WASD or tap the floor: walk. Drag an object, or Space near one: carry it.');
  el.replaceChildren(h('div', { class: 'scene' },
    h('div', { class: 'scene-bar' }, status, h('div', { class: 'scene-controls' }, joinButton, leaveButton)),
    error, stage, note, hint));

  try {
    view = new SceneView(stage);
  } catch (err) {
    // No WebGL: the scene still syncs (and the debug hook works), it
    // just cannot be drawn here.
    stage.append(h('p', { class: 'error scene-nogl' }, `This browser cannot draw the 3D scene: ${err.message}`));
  }

  // Presence: avatars are drawn for the call's participants only, so a
  // tab that crashed (its avatar key still in the world) leaves no ghost.
  function present() {
    const ids = new Set();
    if (session.room) {
      ids.add(session.room.localParticipant.identity);
      for (const p of session.room.remoteParticipants.values()) ids.add(p.identity);
    }
    return ids;
  }

  function holderActive(v) {
    return !!v?.held && present().has(v.held);
  }

  function objectValue(key) {
    const v = world.get(key);
    return isPos(v?.p) ? v : { p: HOME.get(key) };
  }

  function drawObject(key) {
    if (!HOME.has(key)) return;
    const v = objectValue(key);
    view?.setObject(key, v.p.map(metres), holderActive(v));
  }

  function drawAvatars() {
    if (!view) return;
    const ids = present();
    for (const id of [...view.avatars.keys()]) if (!ids.has(id)) view.removeAvatar(id);
    for (const id of ids) drawAvatar(id);
  }

  function drawAvatar(identity) {
    if (!view || !present().has(identity)) return;
    const v = world.get(`avatar/${identity}`);
    const p = isPos(v?.p) ? v.p : spawnPoint(identity);
    view.setAvatar(identity, localpart(identityUser(identity)), p.map(metres), (Number.isSafeInteger(v?.yaw) ? v.yaw : 0) / 1000, identity === me());
  }

  function drawAll() {
    for (const key of HOME.keys()) drawObject(key);
    drawAvatars();
    renderStatus();
  }

  function onChange(keys) {
    for (const key of keys) {
      if (key.startsWith('avatar/')) drawAvatar(key.slice('avatar/'.length));
      else drawObject(key);
    }
  }

  function renderStatus() {
    const s = session.state;
    const others = session.room ? session.room.remoteParticipants.size : 0;
    status.textContent = s === 'joined'
      ? (others ? `In the scene with ${others} other${others === 1 ? '' : 's'}` : 'In the scene, alone so far')
      : s === 'joining' ? 'Joining the scene…' : s === 'leaving' ? 'Leaving…' : 'Not in the scene';
    joinButton.hidden = s !== 'idle';
    leaveButton.hidden = s !== 'joined';
  }

  // Sending. A local change goes into the world at once (drawn at once)
  // and is marked for the pacer; the pacer lets the changed keys out at
  // most every 1/30 s on the lossy channel. Reliable messages go at once.

  function write(key, value) {
    world.setLocal(key, value, me(), world.stamp(key, Date.now()));
    onChange([key]);
  }

  function publish(keys, reliable) {
    if (session.state !== 'joined' || !keys.length) return Promise.resolve();
    const by = me();
    const wall = Date.now();
    // One stamp for the message, past every key's current one.
    const ts = Math.max(...keys.map((k) => world.stamp(k, wall)));
    const set = {};
    const del = [];
    for (const k of keys) {
      const e = world.entry(k);
      if (!e) continue;
      if (e.deleted) {
        world.deleteLocal(k, by, ts);
        del.push(k);
      } else {
        world.setLocal(k, e.value, by, ts);
        set[k] = e.value;
      }
    }
    tracker.sent(keys, now(), reliable);
    return session.publishData(TOPIC, encodeMessage({ ts, set, del }), { reliable })
      .catch((err) => console.warn('sending a world change', err));
  }

  function schedule() {
    if (sendTimer) return;
    const due = pacer.dueIn(performance.now());
    if (due === Infinity) return;
    sendTimer = setTimeout(() => {
      sendTimer = null;
      const keys = pacer.take(performance.now());
      if (keys) publish(keys, false);
      schedule();
    }, due);
  }

  function moveLossy(key, value) {
    write(key, value);
    pacer.mark(key);
    schedule();
  }

  function sendReliable(key, value) {
    if (value === undefined) world.deleteLocal(key, me(), world.stamp(key, Date.now()));
    else write(key, value);
    pacer.cancel(key);
    return publish([key], true);
  }

  // The avatar: keys held, or a point on the floor to walk to.

  const held = new Set();
  // The object being carried: {key, pointerId} while dragged with a
  // pointer, {key, keyboard: true} while carried in front of the avatar.
  let carrying = null;
  let target = null; // [x, z] metres
  let walking = 0; // animation frame
  let lastStep = 0;

  function myAvatar() {
    const id = me();
    const v = world.get(`avatar/${id}`);
    return { p: isPos(v?.p) ? v.p : spawnPoint(id), yaw: Number.isSafeInteger(v?.yaw) ? v.yaw : 0 };
  }

  function startWalking() {
    if (walking || !me()) return;
    lastStep = performance.now();
    walking = requestAnimationFrame(step);
  }

  function step(t) {
    walking = 0;
    // A frame's time may precede the now() that scheduled it.
    const dt = Math.max(0, Math.min(0.1, (t - lastStep) / 1000));
    lastStep = t;
    let dx = 0;
    let dz = 0;
    for (const code of held) {
      dx += DIRS[code][0];
      dz += DIRS[code][1];
    }
    const a = myAvatar();
    let [x, , z] = a.p.map(metres);
    let left = Infinity; // metres to the target
    if (dx || dz) {
      target = null;
    } else if (target) {
      dx = target[0] - x;
      dz = target[1] - z;
      left = Math.hypot(dx, dz);
      if (left <= SPEED * dt) target = null; // there this frame
    }
    if (dx || dz) {
      // The last step is the distance left, so the avatar stops on the
      // target, not up to a frame's walk short of it (a slow frame rate
      // makes that walk long).
      const len = Math.hypot(dx, dz);
      const d = Math.min(SPEED * dt, left);
      x = clamp(x + (dx / len) * d);
      z = clamp(z + (dz / len) * d);
      // Yaw 0 faces -z; turn toward the walking direction, not at once.
      const want = Math.atan2(-dx, -dz);
      let yaw = a.yaw / 1000;
      const diff = Math.atan2(Math.sin(want - yaw), Math.cos(want - yaw));
      yaw += Math.sign(diff) * Math.min(Math.abs(diff), TURN * dt);
      yaw = Math.atan2(Math.sin(yaw), Math.cos(yaw)); // within ±π
      moveLossy(`avatar/${me()}`, { p: [mm(x), 0, mm(z)], yaw: Math.round(yaw * 1000) || 0 });
      if (carrying?.keyboard) {
        // Carried in front: yaw 0 faces -z.
        const y = objectValue(carrying.key).p[1];
        moveLossy(carrying.key, {
          p: [mm(clamp(x - Math.sin(yaw) * CARRY)), y, mm(clamp(z - Math.cos(yaw) * CARRY))], held: me(),
        });
      }
    }
    if (held.size || target) walking = requestAnimationFrame(step);
  }

  // Keyboard: Space or E picks up the nearest object within reach, and
  // puts it down again.
  function toggleCarry() {
    if (carrying?.keyboard) {
      const { key } = carrying;
      carrying = null;
      sendReliable(key, { p: objectValue(key).p });
      note.textContent = `Put down the ${NAMES.get(key)}`;
      return;
    }
    if (carrying || !me()) return;
    const [x, , z] = myAvatar().p;
    let best = null;
    for (const key of HOME.keys()) {
      const v = objectValue(key);
      const d = Math.hypot(v.p[0] - x, v.p[2] - z);
      if (d <= mm(REACH) && (!best || d < best.d) && !(holderActive(v) && v.held !== me())) best = { key, d };
    }
    if (!best) {
      note.textContent = 'Nothing within reach: walk up to an object';
      return;
    }
    carrying = { key: best.key, keyboard: true };
    sendReliable(best.key, { p: objectValue(best.key).p, held: me() });
    note.textContent = `Carrying the ${NAMES.get(best.key)}`;
  }

  const onKey = (down) => (e) => {
    if ((e.code === 'Space' || e.code === 'KeyE') && !e.repeat && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      if (down) toggleCarry();
      return;
    }
    if (!DIRS[e.code] || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault();
    if (down) held.add(e.code);
    else held.delete(e.code);
    if (down) startWalking();
  };
  stage.addEventListener('keydown', onKey(true));
  stage.addEventListener('keyup', onKey(false));
  stage.addEventListener('blur', () => held.clear());

  // Objects: press on one to pick it up (reliable), drag it over the
  // floor (lossy, paced), release to drop it (reliable). Press on the
  // floor to walk there.

  stage.addEventListener('pointerdown', (e) => {
    if (!view || !me() || e.button > 0 || carrying) return;
    stage.focus();
    const key = view.pickObject(e.clientX, e.clientY);
    if (key) {
      const v = objectValue(key);
      if (holderActive(v) && v.held !== me()) {
        note.textContent = `${localpart(identityUser(v.held))} is holding that`;
        return;
      }
      carrying = { key, pointerId: e.pointerId };
      stage.setPointerCapture(e.pointerId);
      sendReliable(key, { p: v.p, held: me() });
      e.preventDefault();
      return;
    }
    const spot = view.floorPoint(e.clientX, e.clientY);
    if (spot) {
      target = spot;
      startWalking();
    }
  });
  stage.addEventListener('pointermove', (e) => {
    if (!carrying || e.pointerId !== carrying.pointerId) return;
    const spot = view.floorPoint(e.clientX, e.clientY);
    if (!spot) return;
    const y = objectValue(carrying.key).p[1];
    moveLossy(carrying.key, { p: [mm(spot[0]), y, mm(spot[1])], held: me() });
  });
  const drop = (e) => {
    if (!carrying || e.pointerId !== carrying.pointerId) return;
    const { key } = carrying;
    carrying = null;
    sendReliable(key, { p: objectValue(key).p });
  };
  stage.addEventListener('pointerup', drop);
  stage.addEventListener('pointercancel', drop);

  // The session: join data-only unless in the call; on joining, show
  // ourselves to the others at once (reliably, not waiting to move).

  async function enter() {
    error.textContent = '';
    if (session.state !== 'joined') joinedHere = true;
    await session.join({ audio: false, video: false });
    // The SFU's snapshot (none for an empty world) may still be on its
    // way; it keeps this write of ours (WorldState.applySnapshot).
    const a = myAvatar();
    await sendReliable(`avatar/${me()}`, a);
    drawAll();
  }

  async function leave() {
    held.clear();
    target = null;
    note.textContent = '';
    if (carrying && session.state === 'joined') {
      const { key } = carrying;
      carrying = null;
      sendReliable(key, { p: objectValue(key).p });
    }
    if (session.state === 'joined') {
      await sendReliable(`avatar/${me()}`, undefined);
      await drained();
    }
    joinedHere = false;
    await session.leave();
  }

  // drained waits (a little, at most) until the reliable channel has
  // handed our last messages to the network: disconnecting right after
  // sending can lose them, and our avatar would stay in the saved world.
  async function drained() {
    const dc = session.room?.engine?.dataChannelForKind?.(0); // livekit-client's DataChannelKind.RELIABLE
    for (let i = 0; dc && dc.readyState === 'open' && dc.bufferedAmount > 0 && i < 25; i++) {
      await new Promise((resolve) => { setTimeout(resolve, 20); });
    }
  }

  // Avatars of people who left: one of those still here (the least
  // identity, in the server's order) deletes them, so that the world the
  // SFU saves holds no one's avatar. Only people seen in the call are
  // swept: an avatar may arrive just before its owner's arrival is known.
  const seen = new Set();
  function sweepAvatars() {
    if (session.state !== 'joined') return;
    const ids = present();
    for (const id of ids) seen.add(id);
    if ([...ids].sort(compareIdentity)[0] !== me()) return;
    const gone = world.keys('avatar/').map((k) => k.slice('avatar/'.length)).filter((id) => seen.has(id) && !ids.has(id));
    for (const id of gone) {
      world.deleteLocal(`avatar/${id}`, me(), world.stamp(`avatar/${id}`, Date.now()));
      seen.delete(id);
    }
    if (gone.length) publish(gone.map((id) => `avatar/${id}`), true);
  }

  const offs = [
    tracker.attach(onChange),
    session.on('participants', () => { sweepAvatars(); drawAll(); }),
    session.on('state', (s) => {
      // Joined by the call panel while this one is open (its join was
      // under way when the scene opened, or it joined again after a
      // leave): show ourselves, as enter() does for a join of ours.
      if (s === 'joined' && !joinedHere && !world.get(`avatar/${me()}`)) sendReliable(`avatar/${me()}`, myAvatar());
      drawAll();
    }),
  ];

  // The browser tests drive and read the scene through this hook.
  const debug = {
    /** objectPosition is an object's [x, y, z] in mm as this tab sees it. */
    objectPosition: (key) => (HOME.has(key) ? [...objectValue(key).p] : null),
    /** moveObject puts an object at x, y, z mm (as a drop there) and returns the send time (ms). */
    moveObject: (key, x, y, z) => {
      sendReliable(key, { p: [x, y, z].map(Math.round) });
      return tracker.sentAt.get(key) ?? null;
    },
    avatarPosition: (identity = me()) => world.get(`avatar/${identity}`)?.p || null,
    /** screenPoint is where an object shows on the page (client px), for a real pointer drag. */
    screenPoint: (key) => (view ? view.screenPoint(objectValue(key).p.map(metres)) : null),
    /** floorPoint is where floor point x, z (mm) shows on the page. */
    floorPoint: (x, z) => (view ? view.screenPoint([metres(x), 0, metres(z)]) : null),
    sentAt: (key) => tracker.sentAt.get(key) ?? null,
    changedAt: (key) => tracker.changedAt.get(key) ?? null,
    /** snapshots counts the SFU's world snapshots received in this call (by the session, the scene open or not). */
    snapshots: () => tracker.snapshots,
    /** attached is how many scene panels follow the session's world (1 while this one is open). */
    attached: () => tracker.attached,
    received: () => ({ ...tracker.received }),
    /** sends lists this tab's world sends: [time (ms), reliable]. */
    sends: () => tracker.sends.map((x) => [...x]),
    /** entries is the world as this tab holds it: key -> {by, ts, value} or {by, ts, deleted}. */
    entries: () => Object.fromEntries(world.entries),
    identity: () => me(),
    /** avatars lists the avatars drawn: identity -> [x, z] metres and colour. */
    avatars: () => Object.fromEntries([...(view?.avatars || new Map())].map(([id, g]) =>
      [id, { at: [g.position.x, g.position.z], color: g.children[0].material.color.getHexString() }])),
    /** carrying is the key of the object this tab carries, or null. */
    carrying: () => carrying?.key ?? null,
    state: () => session.state,
  };
  window.plexusDebug = Object.assign(window.plexusDebug || {}, { scene: debug });

  drawAll();
  let entering = Promise.resolve();
  if (session.state === 'idle') entering = enter().catch(fail);
  else if (session.state === 'joined' && !world.get(`avatar/${me()}`)) sendReliable(`avatar/${me()}`, myAvatar());

  return () => {
    for (const off of offs) off();
    clearTimeout(sendTimer);
    cancelAnimationFrame(walking);
    view?.dispose();
    view = null;
    if (window.plexusDebug?.scene === debug) delete window.plexusDebug.scene;
    // Another tab of the same room (the chat, the call): stay in, as a
    // call goes on behind the chat. The room closed: a data-only
    // membership this panel made ends with it, while a call with media
    // (the call panel's) goes on. The app sets the open room after the
    // old view closes, hence the look one task later.
    setTimeout(() => {
      if (app.openRoomId === room.id) return;
      entering.then(() => {
        if (joinedHere && session.state === 'joined' && !session.micEnabled && !session.cameraEnabled) {
          leave().catch((err) => console.warn('leaving the scene', err));
        }
      });
    }, 0);
  };
}
