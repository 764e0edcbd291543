// The member list of the open room: joined and invited members, from the
// room state, completed once from GET /members when the room opens.

import { h, replace } from '../dom.js';

export function membersView(room, app) {
  const list = h('ul', { class: 'members', 'aria-label': 'Members' });
  const heading = h('h2', {}, 'Members');

  function render() {
    const ms = room.members().filter((m) => m.membership === 'join' || m.membership === 'invite');
    heading.textContent = `Members (${ms.filter((m) => m.membership === 'join').length})`;
    replace(list, ms.map((m) => h('li', { class: `member ${m.membership}` },
      h('span', {}, m.name), m.name !== m.userId ? h('span', { class: 'muted' }, m.userId) : null,
      m.membership === 'invite' ? h('span', { class: 'badge' }, 'invited') : null)));
  }

  app.api.members(room.id).then((res) => {
    for (const ev of res.chunk || []) room.setState(ev);
    render();
  }, (err) => console.warn('members', err));
  const off = app.store.on('room', (id) => { if (id === room.id) render(); });
  render();
  return { el: h('aside', { class: 'member-panel', 'aria-label': 'Member list' }, heading, list), close: off };
}
