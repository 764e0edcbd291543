-- Event graph, state groups and per-room bookkeeping.
-- Double-braced tokens are filled in per backend by dialect.expand; ID is
-- the type of every identifier column (IDs, event types, state keys).

CREATE TABLE rooms (
    room_id   {{ID}} PRIMARY KEY,
    version   TEXT NOT NULL,
    max_depth BIGINT NOT NULL DEFAULT 0
);

-- stream_pos is the key so that EventsSince is a range scan on the table
-- itself; it is allocated by Commit, not by the database.
--
-- The per-event tables (events, event_auth_edges, state_group_entries) have
-- no foreign keys: PostgreSQL checks each with a query per inserted row,
-- which cost as much as the insert itself, and Commit, the only writer,
-- already knows the room and groups exist.
CREATE TABLE events (
    stream_pos       {{INT_PK}},
    event_id         {{ID}} NOT NULL UNIQUE,
    room_id          {{ID}} NOT NULL,
    type             {{ID}} NOT NULL,
    state_key        {{ID}},
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json             {{BLOB}} NOT NULL,
    prev_events      TEXT NOT NULL, -- JSON array, in PDU order
    auth_events      TEXT NOT NULL, -- JSON array, in PDU order
    rejected         TEXT NOT NULL DEFAULT '',
    soft_failed      BOOLEAN NOT NULL DEFAULT FALSE,
    outlier          BOOLEAN NOT NULL DEFAULT FALSE,
    state_group      BIGINT NOT NULL DEFAULT 0 -- 0: no state (outlier or rejected)
);

-- prev_events live only in events.prev_events: nothing queries them by
-- key yet, and an edge table with a random-keyed primary key and index
-- costs two scattered page writes per event. The auth edges below are
-- different: the auth-chain walk needs them indexed.

-- The primary key serves the recursive auth-chain walk: each step looks up
-- the auth events of one event ID.
CREATE TABLE event_auth_edges (
    event_id {{ID}} NOT NULL,
    auth_id  {{ID}} NOT NULL,
    PRIMARY KEY (event_id, auth_id)
){{WITHOUT_ROWID}};

-- prev_group NULL: a full snapshot; otherwise a delta on prev_group.
-- chain_len counts the deltas between this group and its snapshot.
CREATE TABLE state_groups (
    id         {{INT_PK}},
    room_id    {{ID}} NOT NULL REFERENCES rooms (room_id),
    prev_group BIGINT REFERENCES state_groups (id),
    chain_len  INTEGER NOT NULL
);

-- event_id NULL in a delta removes the key from the base.
CREATE TABLE state_group_entries (
    group_id  BIGINT NOT NULL,
    type      {{ID}} NOT NULL,
    state_key {{ID}} NOT NULL,
    event_id  {{ID}},
    PRIMARY KEY (group_id, type, state_key)
){{WITHOUT_ROWID}};

CREATE TABLE room_extremities (
    room_id  {{ID}} NOT NULL REFERENCES rooms (room_id),
    event_id {{ID}} NOT NULL,
    PRIMARY KEY (room_id, event_id)
){{WITHOUT_ROWID}};

CREATE TABLE current_state (
    room_id   {{ID}} NOT NULL REFERENCES rooms (room_id),
    type      {{ID}} NOT NULL,
    state_key {{ID}} NOT NULL,
    event_id  {{ID}} NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
){{WITHOUT_ROWID}};

CREATE TABLE missing_prevs (
    room_id       {{ID}} NOT NULL REFERENCES rooms (room_id),
    event_id      {{ID}} NOT NULL,
    referenced_by {{ID}} NOT NULL,
    PRIMARY KEY (room_id, event_id, referenced_by)
){{WITHOUT_ROWID}};
