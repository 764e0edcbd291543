// The settings dialog: per-browser preferences (settings.js).

import { h } from '../dom.js';
import { saveSettings } from '../settings.js';

export function settingsDialog(app) {
  const s = app.settings;
  const relay = h('input', {
    type: 'checkbox', id: 'setting-relay-only', checked: s.relayOnly,
    onchange: () => { s.relayOnly = relay.checked; saveSettings(s); },
  });
  const dlg = h('dialog', { class: 'settings', 'aria-labelledby': 'settings-title' },
    h('form', { method: 'dialog' },
      h('h2', { id: 'settings-title' }, 'Settings'),
      h('div', { class: 'check' }, relay,
        h('label', { for: 'setting-relay-only' }, 'Relay only: send call media through the TURN relay, never directly')),
      h('p', { class: 'muted' }, 'Hides your network addresses from the other side; applies to the next call.'),
      h('div', { class: 'row' }, h('button', { class: 'primary', value: 'close', id: 'settings-close' }, 'Done'))));
  dlg.addEventListener('close', () => dlg.remove());
  return dlg;
}
