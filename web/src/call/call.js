// One 1:1 call: a RTCPeerConnection and the Matrix VoIP events that set it
// up (Client-Server API, "Voice over IP", version "1" of the events:
// m.call.invite, m.call.answer, m.call.candidates, m.call.select_answer,
// m.call.reject, m.call.hangup). The CallManager routes events to it.

import { Emitter, randomId } from '../dom.js';

/** Invite lifetime: the spec's minimal recommended 90 s ("Call Event Liveness"). */
export const INVITE_LIFETIME = 90000;

const VERSION = '1';

// Call states, as the view shows them.
export const State = {
  Preparing: 'preparing', // getting media, creating the offer
  InviteSent: 'invite_sent', // waiting for an answer
  Ringing: 'ringing', // an incoming invite waits for the user
  Connecting: 'connecting', // answered; ICE and DTLS under way
  Connected: 'connected',
  Ended: 'ended',
};

export class Call extends Emitter {
  /**
   * @param {object} o
   * @param {string} o.roomId
   * @param {string} o.callId
   * @param {string} o.partyId this device's party ID
   * @param {boolean} o.outgoing
   * @param {(type: string, content: object) => Promise} o.send sends a room event
   * @param {() => Promise<RTCConfiguration>} o.rtcConfig ICE servers and policy
   */
  constructor({ roomId, callId, partyId, outgoing, send, rtcConfig, peer }) {
    super();
    this.roomId = roomId;
    this.callId = callId;
    this.partyId = partyId;
    this.outgoing = outgoing;
    this.peer = peer; // the other side's user ID
    this.opponentParty = null; // their party_id once chosen
    this.send = send;
    this.rtcConfig = rtcConfig;
    this.state = outgoing ? State.Preparing : State.Ringing;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = new MediaStream();
    this.pendingLocal = []; // candidates gathered before the invite/answer went out
    this.localSignalled = false; // invite or answer sent: candidates may follow
    this.flushTimer = null;
    this.remoteCandidates = new Map(); // party_id -> candidates awaiting the remote description
    this.remoteOffer = null;
    this.micMuted = false;
    this.camMuted = false;
    this.endReason = null;
    this.mediaHandedOver = false; // ended by glare with its stream moved to the replacing call
  }

  setState(s) {
    // Ended is final: a step still in flight (an invite being sent when
    // glare ended the call) must not revive it.
    if (this.state === s || this.state === State.Ended) return;
    console.debug(`call ${this.callId}: ${this.state} -> ${s}`);
    this.state = s;
    this.emit('state', s);
  }

  async getMedia() {
    if (!this.localStream) {
      this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      this.emit('local', this.localStream);
    }
    return this.localStream;
  }

  /** adoptMedia takes over a stream from a call replaced by glare resolution. */
  adoptMedia(stream) {
    if (stream) this.localStream = stream;
  }

  async makePeer() {
    const pc = new RTCPeerConnection(await this.rtcConfig());
    this.pc = pc;
    for (const t of this.localStream.getTracks()) pc.addTrack(t, this.localStream);
    pc.addEventListener('track', (e) => {
      this.remoteStream.addTrack(e.track);
      this.emit('remote', this.remoteStream);
    });
    pc.addEventListener('icecandidate', (e) => this.onLocalCandidate(e.candidate));
    pc.addEventListener('connectionstatechange', () => {
      if (this.state === State.Ended) return;
      if (pc.connectionState === 'connected') this.setState(State.Connected);
      if (pc.connectionState === 'failed') this.hangup('ice_failed');
    });
    return pc;
  }

  /** placeCall sends the invite with our offer. */
  async placeCall() {
    const stream = await this.getMedia();
    if (this.state === State.Ended) {
      // Ended while the camera was starting (glare, or a hangup): the
      // stream reached no one.
      if (!this.mediaHandedOver) for (const t of stream.getTracks()) t.stop();
      return;
    }
    const pc = await this.makePeer();
    await pc.setLocalDescription(await pc.createOffer());
    if (this.state === State.Ended) {
      pc.close();
      return;
    }
    // Sent from here on, for glare: the other side may see our invite
    // before the server's answer to this request reaches us, so both
    // sides must then compare call IDs rather than each drop its own.
    this.setState(State.InviteSent);
    await this.send('m.call.invite', {
      call_id: this.callId, party_id: this.partyId, version: VERSION, lifetime: INVITE_LIFETIME,
      offer: { type: 'offer', sdp: pc.localDescription.sdp },
    });
    if (this.state === State.Ended) return;
    this.localSignalled = true;
    this.flushCandidates();
  }

  /** onInvite records an incoming invite; the user answers or rejects. */
  onInvite(content) {
    this.remoteOffer = content.offer;
    this.opponentParty = content.party_id;
  }

  /** answer accepts the incoming call. */
  async answer() {
    if (this.state !== State.Ringing) return;
    this.setState(State.Connecting);
    await this.getMedia();
    const pc = await this.makePeer();
    await pc.setRemoteDescription(this.remoteOffer);
    await this.applyRemoteCandidates(this.opponentParty);
    await pc.setLocalDescription(await pc.createAnswer());
    await this.send('m.call.answer', {
      call_id: this.callId, party_id: this.partyId, version: VERSION,
      answer: { type: 'answer', sdp: pc.localDescription.sdp },
    });
    this.localSignalled = true;
    this.flushCandidates();
  }

  /** onAnswer takes the first answer and tells every callee which one won (m.call.select_answer). */
  async onAnswer(content) {
    if (!this.outgoing || this.opponentParty || this.state === State.Ended) return;
    this.opponentParty = content.party_id;
    this.setState(State.Connecting);
    await this.pc.setRemoteDescription(content.answer);
    await this.applyRemoteCandidates(content.party_id);
    await this.send('m.call.select_answer', {
      call_id: this.callId, party_id: this.partyId, version: VERSION, selected_party_id: content.party_id,
    });
  }

  async onCandidates(content) {
    const list = this.remoteCandidates.get(content.party_id) || [];
    list.push(...(content.candidates || []));
    this.remoteCandidates.set(content.party_id, list);
    if (this.pc?.remoteDescription && content.party_id === this.opponentParty) {
      await this.applyRemoteCandidates(content.party_id);
    }
  }

  async applyRemoteCandidates(party) {
    const list = this.remoteCandidates.get(party) || [];
    this.remoteCandidates.set(party, []);
    for (const c of list) {
      try {
        // An empty candidate string is the end of candidates.
        await this.pc.addIceCandidate(c.candidate ? c : null);
      } catch (err) {
        console.warn('bad remote candidate', c, err);
      }
    }
  }

  onLocalCandidate(cand) {
    // null is the end of gathering, sent as an empty candidate (spec,
    // m.call.candidates).
    this.pendingLocal.push(cand ? cand.toJSON() : { candidate: '', sdpMid: '0', sdpMLineIndex: 0 });
    if (!this.localSignalled) return;
    // Batch the candidates of the next few ms into one event rather than
    // one event per candidate.
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => this.flushCandidates(), 50);
  }

  flushCandidates() {
    if (!this.pendingLocal.length || this.state === State.Ended) return;
    const candidates = this.pendingLocal;
    this.pendingLocal = [];
    this.send('m.call.candidates', { call_id: this.callId, party_id: this.partyId, version: VERSION, candidates })
      .catch((err) => console.warn('sending candidates failed', err));
  }

  setMicMuted(m) {
    this.micMuted = m;
    for (const t of this.localStream?.getAudioTracks() || []) t.enabled = !m;
    this.emit('mute');
  }

  setCamMuted(m) {
    this.camMuted = m;
    for (const t of this.localStream?.getVideoTracks() || []) t.enabled = !m;
    this.emit('mute');
  }

  /** reject declines a ringing call (m.call.reject, version 1). */
  reject() {
    if (this.state !== State.Ringing) return;
    this.send('m.call.reject', { call_id: this.callId, party_id: this.partyId, version: VERSION }).catch(() => {});
    this.terminate('rejected', { keepMedia: false });
  }

  /**
   * hangup ends the call and tells the other side. reason is sent (the
   * m.call.hangup schema requires it in version 1, user_hangup included);
   * endReason, if given, is what the view shows instead.
   */
  hangup(reason = 'user_hangup', { keepMedia = false, endReason = reason } = {}) {
    if (this.state === State.Ended) return;
    this.send('m.call.hangup', { call_id: this.callId, party_id: this.partyId, version: VERSION, reason })
      .catch(() => {});
    this.terminate(endReason, { keepMedia });
  }

  /** terminate ends the call locally (the other side hung up, or glare replaced it). */
  terminate(reason, { keepMedia = false } = {}) {
    if (this.state === State.Ended) return;
    clearTimeout(this.flushTimer);
    this.endReason = reason;
    this.pc?.close();
    this.mediaHandedOver = keepMedia && !!this.localStream;
    if (!keepMedia) for (const t of this.localStream?.getTracks() || []) t.stop();
    this.setState(State.Ended);
  }

  /**
   * stats reads the figures the call view shows: video frames decoded
   * and the type of the local candidate of the selected pair ("host",
   * "srflx" or "relay").
   */
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    let framesDecoded = 0;
    let pairId = null;
    const byId = new Map();
    report.forEach((s) => {
      byId.set(s.id, s);
      if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded += s.framesDecoded || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    if (!pairId) {
      // Firefox has no transport stats: the selected pair is flagged.
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pairId = s.id;
      });
    }
    const pair = pairId ? byId.get(pairId) : null;
    const local = pair ? byId.get(pair.localCandidateId) : null;
    const remote = pair ? byId.get(pair.remoteCandidateId) : null;
    return {
      framesDecoded,
      localCandidateType: local?.candidateType || '',
      remoteCandidateType: remote?.candidateType || '',
    };
  }

  static newCallId() { return randomId(12); }
}
