// The room view's panels: chat is one; the group call (livekit-client)
// and the shared 3D scene (three) register beside it later, without the
// room view knowing them. A panel is
//   { id, label, mount(el, ctx) -> unmount function }
// where ctx is { room, app }: the open Room and the app's services
// (api, store, realtime, calls, settings).

const panels = [];

export function registerPanel(p) {
  if (panels.some((q) => q.id === p.id)) throw new Error(`panel ${p.id} registered twice`);
  panels.push(p);
}

export function listPanels() {
  return [...panels];
}
