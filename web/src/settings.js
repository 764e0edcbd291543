// Per-browser settings, kept in localStorage.

const KEY = 'plexus.settings';

const defaults = {
  // relayOnly forces every call's media through the TURN relay
  // (iceTransportPolicy "relay"): the other side never learns this
  // device's addresses, at the cost of a longer path.
  relayOnly: false,
};

export function loadSettings() {
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(KEY) || '{}') };
  } catch {
    return { ...defaults };
  }
}

export function saveSettings(s) {
  localStorage.setItem(KEY, JSON.stringify(s));
}
