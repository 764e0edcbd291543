// The 1:1 call overlay: rings for an incoming call (answer, decline),
// shows both videos with microphone, camera and hang-up controls, and
// the connection figures (frames decoded, direct or relayed path).

import { h, replace, localpart } from '../dom.js';
import { State } from '../call/call.js';

const ENDED = {
  user_hangup: 'Call ended', remote_hangup: 'The other side hung up', rejected: 'Call declined',
  answered_elsewhere: 'Answered on another device', invite_timeout: 'No answer',
  ice_failed: 'The connection failed', user_media_failed: 'Camera or microphone unavailable',
  replaced: 'Call replaced',
};

export function callLayer(app) {
  const layer = h('div', { class: 'call-layer', hidden: true, role: 'region', 'aria-label': 'Call' });
  let cleanup = null;

  app.calls.on('call', (call) => {
    cleanup?.();
    cleanup = call ? mount(call) : null;
    layer.hidden = !call;
  });

  function mount(call) {
    const remote = h('video', { class: 'remote', autoplay: true, playsinline: true, id: 'remote-video', 'aria-label': 'Other side\'s video' });
    const local = h('video', { class: 'local', autoplay: true, playsinline: true, muted: true, id: 'local-video', 'aria-label': 'Your video' });
    local.muted = true;
    const status = h('p', { class: 'call-status', id: 'call-status', 'aria-live': 'polite' });
    const stats = h('p', { class: 'call-stats muted', id: 'call-stats' });
    const controls = h('div', { class: 'call-controls' });
    const peer = call.peer ? localpart(call.peer) : 'the other side';
    let timer = null;

    const mic = h('button', {
      class: 'icon', id: 'call-mic', 'aria-pressed': 'false', 'aria-label': 'Mute microphone',
      onclick: () => call.setMicMuted(!call.micMuted),
    }, 'Mic');
    const cam = h('button', {
      class: 'icon', id: 'call-cam', 'aria-pressed': 'false', 'aria-label': 'Turn camera off',
      onclick: () => call.setCamMuted(!call.camMuted),
    }, 'Camera');
    const hang = h('button', { class: 'icon danger', id: 'call-hangup', 'aria-label': 'Hang up', onclick: () => call.hangup() }, 'Hang up');
    const answer = h('button', {
      class: 'primary', id: 'call-answer', 'aria-label': `Answer video call from ${peer}`,
      onclick: () => call.answer().catch((err) => { status.textContent = err.message; call.hangup('user_media_failed'); }),
    }, 'Answer');
    const decline = h('button', { class: 'danger', id: 'call-decline', 'aria-label': 'Decline call', onclick: () => call.reject() }, 'Decline');
    const close = h('button', { id: 'call-close', onclick: () => app.calls.setCurrent(null) }, 'Close');

    function render() {
      layer.dataset.state = call.state;
      mic.setAttribute('aria-pressed', String(call.micMuted));
      mic.setAttribute('aria-label', call.micMuted ? 'Unmute microphone' : 'Mute microphone');
      mic.classList.toggle('off', call.micMuted);
      cam.setAttribute('aria-pressed', String(call.camMuted));
      cam.setAttribute('aria-label', call.camMuted ? 'Turn camera on' : 'Turn camera off');
      cam.classList.toggle('off', call.camMuted);
      switch (call.state) {
        case State.Ringing:
          status.textContent = `Incoming video call from ${peer}`;
          replace(controls, answer, decline);
          break;
        case State.Preparing:
        case State.InviteSent:
          status.textContent = `Calling ${peer}…`;
          replace(controls, mic, cam, hang);
          break;
        case State.Connecting:
          status.textContent = 'Connecting…';
          replace(controls, mic, cam, hang);
          break;
        case State.Connected:
          status.textContent = `In call with ${peer}`;
          replace(controls, mic, cam, hang);
          break;
        case State.Ended:
          status.textContent = ENDED[call.endReason] || `Call ended (${call.endReason})`;
          replace(controls, close);
          break;
      }
    }

    async function poll() {
      const s = await call.stats().catch(() => null);
      if (!s) return;
      // The figures are the call's, for the curious and for the tests:
      // data-* carry them unformatted.
      stats.dataset.framesDecoded = String(s.framesDecoded);
      stats.dataset.localCandidateType = s.localCandidateType;
      const path = !s.localCandidateType ? 'not connected'
        : s.localCandidateType === 'relay' || s.remoteCandidateType === 'relay' ? 'relayed through TURN' : 'direct';
      stats.textContent = `Path: ${path} · ${s.framesDecoded} video frames decoded`;
    }

    const offs = [
      call.on('state', (s) => {
        render();
        if (s === State.Ended) {
          clearInterval(timer);
          remote.srcObject = null;
          local.srcObject = null;
        }
      }),
      call.on('mute', render),
      call.on('local', (stream) => { local.srcObject = stream; }),
      call.on('remote', (stream) => { if (remote.srcObject !== stream) remote.srcObject = stream; }),
    ];
    if (call.localStream) local.srcObject = call.localStream;
    timer = setInterval(poll, 1000);
    replace(layer, h('div', { class: 'call-box' },
      h('div', { class: 'videos' }, remote, local), status, stats, controls));
    render();
    return () => {
      clearInterval(timer);
      offs.forEach((off) => off());
    };
  }

  return layer;
}
