// The sign-in screen: log in or register with a user name and password.

import { h } from '../dom.js';

/**
 * loginView renders the form; onSession(api response) is called with the
 * /login or /register answer (user_id, access_token, device_id).
 */
export function loginView(api, onSession) {
  const user = h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: 'login-pass', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const busy = (b) => form.querySelectorAll('button').forEach((el) => { el.disabled = b; });

  async function run(kind) {
    error.textContent = '';
    if (!user.value || !pass.value) {
      error.textContent = 'Enter a user name and a password.';
      return;
    }
    busy(true);
    try {
      const name = user.value.trim().replace(/^@/, '').replace(/:.*$/, '');
      const res = kind === 'register' ? await api.register(name, pass.value) : await api.login(name, pass.value);
      await onSession(res);
    } catch (err) {
      error.textContent = err.message || String(err);
      busy(false);
    }
  }

  const form = h('form', { class: 'login', onsubmit: (e) => { e.preventDefault(); run('login'); } },
    h('h1', {}, 'Plexus'),
    h('p', { class: 'muted' }, `Sign in to ${location.host}, or create an account there.`),
    h('label', { for: 'login-user' }, 'User name'), user,
    h('label', { for: 'login-pass' }, 'Password'), pass,
    error,
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in'),
      h('button', { type: 'button', id: 'register-submit', onclick: () => run('register') }, 'Create account')));
  return h('main', { class: 'login-page' }, form);
}
