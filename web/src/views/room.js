// The open room: its header (call, invite, members, leave), its panels
// (chat first; see panels.js) and the member list beside them.

import { h, replace } from '../dom.js';
import { listPanels } from '../panels.js';
import { membersView } from './members.js';

export function roomView(room, app) {
  const me = app.store.userId;
  const title = h('h2', { class: 'room-title', id: 'room-title' });
  const error = h('p', { class: 'error', role: 'alert' });
  const body = h('section', { class: 'panel' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Room views' });
  const members = membersView(room, app);
  const fail = (err) => { error.textContent = err.message || String(err); };

  const inviteInput = h('input', { id: 'invite-user', placeholder: '@user:server', 'aria-label': 'User ID to invite', autocapitalize: 'none' });
  const inviteForm = h('form', {
    class: 'invite-form', hidden: true,
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        await app.api.invite(room.id, inviteInput.value.trim());
        inviteInput.value = '';
        inviteForm.hidden = true;
      } catch (err) { fail(err); }
    },
  }, inviteInput, h('button', { type: 'submit', class: 'primary', id: 'invite-send' }, 'Invite'));

  // The member list shows beside the chat on a wide screen unless hidden,
  // and over it on a narrow one only when asked for.
  const wide = window.matchMedia('(min-width: 900px)');
  const membersShown = () => (wide.matches ? !view.classList.contains('members-off') : view.classList.contains('members-on'));
  const syncMembersButton = () => membersButton.setAttribute('aria-pressed', String(membersShown()));
  const membersButton = h('button', {
    class: 'icon', id: 'toggle-members', 'aria-label': 'Show members',
    onclick: () => {
      view.classList.toggle(wide.matches ? 'members-off' : 'members-on');
      syncMembersButton();
    },
  }, 'Members');
  const header = h('header', { class: 'room-header' },
    h('button', { class: 'icon back', 'aria-label': 'Back to rooms', onclick: () => app.openRoom(null) }, '‹ Rooms'),
    title,
    h('div', { class: 'actions' },
      h('button', {
        class: 'icon', id: 'call-start', 'aria-label': 'Start video call',
        onclick: () => app.calls.placeCall(room.id).catch(fail),
      }, 'Call'),
      h('button', {
        class: 'icon', id: 'invite-toggle', 'aria-label': 'Invite someone',
        onclick: () => { inviteForm.hidden = !inviteForm.hidden; if (!inviteForm.hidden) inviteInput.focus(); },
      }, 'Invite'),
      membersButton,
      h('button', {
        class: 'icon', id: 'leave-room', 'aria-label': 'Leave room',
        onclick: () => { leaveBar.hidden = !leaveBar.hidden; },
      }, 'Leave')));
  // Leaving asks once more, in the page: a modal confirm() would stop
  // the page's scripts (the live timeline, a running call) while open.
  const leaveBar = h('div', { class: 'leave-bar', hidden: true, role: 'group', 'aria-label': 'Confirm leaving' },
    h('span', {}, 'Leave this room?'),
    h('button', {
      class: 'danger', id: 'leave-confirm',
      onclick: () => app.api.leave(room.id).then(() => app.openRoom(null), fail),
    }, 'Leave'),
    h('button', { onclick: () => { leaveBar.hidden = true; } }, 'Cancel'));

  let unmount = null;
  function show(panel) {
    unmount?.();
    for (const t of tabs.children) t.setAttribute('aria-selected', String(t.dataset.panel === panel.id));
    unmount = panel.mount(body, { room, app }) || null;
  }
  const panels = listPanels();
  replace(tabs, panels.map((p) => h('button', {
    role: 'tab', dataset: { panel: p.id }, onclick: () => show(p),
  }, p.label)));
  tabs.hidden = panels.length < 2;

  const renderTitle = () => { title.textContent = room.displayName(me); };
  const off = app.store.on('room', (id) => { if (id === room.id) renderTitle(); });
  renderTitle();

  const view = h('div', { class: 'room-view' },
    h('div', { class: 'room-main' }, header, leaveBar, inviteForm, error, tabs, body), members.el);
  syncMembersButton();
  wide.addEventListener('change', syncMembersButton);
  show(panels[0]);
  return {
    el: view,
    close() {
      unmount?.();
      members.close();
      off();
      wide.removeEventListener('change', syncMembersButton);
    },
  };
}
