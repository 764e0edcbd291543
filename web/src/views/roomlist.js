// The room list: invites (accept or decline), joined rooms, and forms to
// create a room and to join one by ID or alias.

import { h, replace } from '../dom.js';
import { callPowerLevels } from '../rtc/power.js';

export function roomListView(app) {
  const list = h('ul', { class: 'rooms', 'aria-label': 'Your rooms' });
  const error = h('p', { class: 'error', role: 'alert' });

  const fail = (err) => { error.textContent = err.message || String(err); };

  function render() {
    const rooms = app.store.sortedRooms();
    replace(list, rooms.length ? rooms.map(item) : h('li', { class: 'muted' }, 'No rooms yet.'));
  }

  function item(room) {
    const name = room.displayName(app.store.userId);
    if (room.membership === 'invite') {
      const inviter = room.inviteState.find((e) => e.type === 'm.room.member' && e.state_key === app.store.userId)?.sender;
      return h('li', { class: 'room invite' },
        h('span', { class: 'room-name' }, name),
        h('span', { class: 'muted' }, inviter ? `invited by ${inviter}` : 'invited'),
        h('div', { class: 'row' },
          h('button', {
            class: 'primary', 'aria-label': `Accept invite to ${name}`,
            onclick: () => app.api.join(room.id).then(() => app.openRoom(room.id), fail),
          }, 'Accept'),
          h('button', { 'aria-label': `Decline invite to ${name}`, onclick: () => app.api.leave(room.id).catch(fail) }, 'Decline')));
    }
    const last = room.timeline.findLast((e) => e.type === 'm.room.message');
    return h('li', { class: 'room' + (app.openRoomId === room.id ? ' active' : '') },
      h('button', {
        class: 'room-open', 'aria-current': app.openRoomId === room.id ? 'true' : null,
        dataset: { roomId: room.id }, onclick: () => app.openRoom(room.id),
      },
      h('span', { class: 'room-name' }, name),
      last ? h('span', { class: 'muted preview' }, last.content?.body || '') : null));
  }

  const newName = h('input', { id: 'new-room-name', placeholder: 'Room name', 'aria-label': 'New room name' });
  const newInvite = h('input', { id: 'new-room-invite', placeholder: '@friend:server (optional)', 'aria-label': 'Invite user ID', autocapitalize: 'none' });
  const newAlias = h('input', { id: 'new-room-alias', placeholder: 'Public address (optional)', 'aria-label': 'Public room address', autocapitalize: 'none' });
  const create = h('form', {
    class: 'stack', 'aria-label': 'Create a room',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      const invite = newInvite.value.trim();
      // An address makes the room public: anyone may join it by #address:server.
      const alias = newAlias.value.trim().replace(/^#/, '').replace(/:.*$/, '');
      try {
        const res = await app.api.createRoom({
          name: newName.value.trim() || undefined, preset: alias ? 'public_chat' : 'private_chat',
          room_alias_name: alias || undefined,
          invite: invite ? [invite] : [], is_direct: !!invite && !newName.value.trim() && !alias,
          power_level_content_override: callPowerLevels,
        });
        newName.value = newInvite.value = newAlias.value = '';
        app.openRoom(res.room_id);
      } catch (err) { fail(err); }
    },
  }, h('h2', {}, 'New room'), newName, newInvite, newAlias, h('button', { type: 'submit', id: 'create-room' }, 'Create room'));

  const joinId = h('input', { id: 'join-room-id', placeholder: '#alias:server or !id:server', 'aria-label': 'Room ID or alias', autocapitalize: 'none' });
  const join = h('form', {
    class: 'stack', 'aria-label': 'Join a room',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        const res = await app.api.join(joinId.value.trim());
        joinId.value = '';
        app.openRoom(res.room_id);
      } catch (err) { fail(err); }
    },
  }, h('h2', {}, 'Join a room'), joinId, h('button', { type: 'submit', id: 'join-room' }, 'Join'));

  app.store.on('rooms', render);
  app.store.on('room', render);
  app.on('open', render);
  render();
  return h('div', { class: 'roomlist' }, h('h2', {}, 'Rooms'), list, error, create, join);
}
