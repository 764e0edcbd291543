// The realtime connection: one ActionCable consumer (one WebSocket) per
// tab at /_plexus/cable, authenticated by the session cookie, with the
// channel subscriptions of signalling/internal/cable under it:
//   SyncChannel  everything /sync would return, pushed (the store's feed)
//   RoomChannel  the open room's part of sync, plus its actions
//                (send_message, typing, receipt), each answered by an ack

import { createConsumer, logger } from '@rails/actioncable';
import { Emitter } from './dom.js';

const SYNC_FILTER = { room: { timeline: { limit: 20 } } };

export class Realtime extends Emitter {
  /** @param {import('./store.js').Store} store */
  constructor(store) {
    super();
    this.store = store;
    this.consumer = null;
    this.sync = null;
    this.syncSince = null; // next_batch of the last SyncChannel message handled
    this.room = null; // {id, sub, since, pending: Map(txn -> {resolve, reject})}
    this.seq = 0;
    this.connected = false;
  }

  start() {
    logger.enabled = false;
    this.consumer = createConsumer('/_plexus/cable');
    const self = this;
    this.sync = this.consumer.subscriptions.create({ channel: 'SyncChannel', filter: SYNC_FILTER }, {
      connected() {
        self.setConnected(true);
        // After a reconnect the subscription is re-sent with its first
        // identifier; resume from the last token handled so nothing is
        // lost (the store drops repeats by event ID).
        if (self.syncSince) this.perform('resume', { since: self.syncSince });
      },
      disconnected() { self.setConnected(false); },
      rejected() { self.emit('error', new Error('the server refused the sync subscription')); },
      received(msg) {
        if (msg.type === 'sync') {
          self.syncSince = msg.next_batch;
          self.store.applySync(msg.sync);
        } else if (msg.type === 'error') {
          console.warn('sync channel error', msg);
        }
      },
    });
  }

  setConnected(v) {
    if (this.connected === v) return;
    this.connected = v;
    this.emit('status', v);
  }

  /** openRoom subscribes to RoomChannel for roomId, dropping the previous room's subscription. */
  openRoom(roomId) {
    if (this.room?.id === roomId) return;
    this.closeRoom();
    const self = this;
    const room = { id: roomId, since: null, pending: new Map() };
    room.sub = this.consumer.subscriptions.create({ channel: 'RoomChannel', room_id: roomId }, {
      connected() {
        if (room.since) this.perform('resume', { since: room.since });
      },
      rejected() { self.emit('error', new Error(`the server refused the subscription to ${roomId}`)); },
      received(msg) {
        if (msg.type === 'room') {
          room.since = msg.next_batch;
          self.store.applyRoom(msg.room_id, msg.membership, msg);
        } else if (msg.type === 'ack' || msg.type === 'error') {
          const p = room.pending.get(msg.txn_id);
          if (!p) {
            // typing and receipt acks carry no txn_id: they are fire and forget.
            if (msg.type === 'error') console.warn(`${msg.action} failed`, msg.errcode, msg.error);
            return;
          }
          room.pending.delete(msg.txn_id);
          if (msg.type === 'ack') p.resolve(msg);
          else p.reject(Object.assign(new Error(msg.error || msg.errcode), { errcode: msg.errcode }));
        }
      },
    });
    this.room = room;
  }

  closeRoom() {
    if (!this.room) return;
    this.room.sub.unsubscribe();
    for (const p of this.room.pending.values()) p.reject(new Error('room closed'));
    this.room = null;
  }

  /** perform runs an action on the open room's channel and resolves with its ack. */
  perform(roomId, action, data) {
    if (this.room?.id !== roomId) return Promise.reject(new Error('room is not open'));
    const txn = `w${Date.now().toString(36)}.${++this.seq}`;
    return new Promise((resolve, reject) => {
      this.room.pending.set(txn, { resolve, reject });
      this.room.sub.perform(action, { ...data, txn_id: txn });
    });
  }

  sendMessage(roomId, content, type = 'm.room.message') {
    return this.perform(roomId, 'send_message', { type, content });
  }

  /** typing and receipt are fire and forget: their acks name no transaction. */
  typing(roomId, typing) {
    if (this.room?.id === roomId) this.room.sub.perform('typing', { typing, timeout: 30000 });
  }

  receipt(roomId, eventId) {
    if (this.room?.id === roomId) this.room.sub.perform('receipt', { receipt_type: 'm.read', event_id: eventId });
  }

  stop() {
    this.closeRoom();
    this.consumer?.disconnect();
    this.consumer = null;
  }
}
