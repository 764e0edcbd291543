// The power levels of rooms the client creates: every member may join a
// group call (org.matrix.msc3401.call.member) and move things in the
// shared 3D scene (org.plexus.world), both state events that would need
// state_default (50) otherwise. power_level_content_override replaces
// top-level keys whole (Client-Server API, "POST /createRoom"), so the
// events map repeats the server's defaults for a version 12 room beside
// the two additions.
export const callPowerLevels = {
  events: {
    'm.room.name': 50,
    'm.room.avatar': 50,
    'm.room.canonical_alias': 50,
    'm.room.topic': 50,
    'm.room.power_levels': 100,
    'm.room.history_visibility': 100,
    // Room version 12: "MUST explicitly be higher than state_default".
    'm.room.tombstone': 150,
    'm.room.server_acl': 100,
    'm.room.encryption': 100,
    'org.matrix.msc3401.call.member': 0,
    'org.plexus.world': 0,
  },
};
