-- Room endpoints of the Client-Server API (signalling/internal/roomapi):
-- transaction IDs, room aliases, the published room directory, receipts,
-- forgotten rooms and redaction targets.

-- Pagination (/messages, /context) walks one room's events in stream
-- order.
CREATE INDEX events_room_pos ON events (room_id, stream_pos);

-- room_txns makes PUT /send and /redact idempotent per device and endpoint
-- (Client-Server API, "Transaction identifiers").
CREATE TABLE room_txns (
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    endpoint   {{ID}} NOT NULL, -- "send" or "redact"
    txn_id     {{ID}} NOT NULL,
    room_id    {{ID}} NOT NULL,
    event_id   {{ID}} NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, endpoint, txn_id)
);

-- room_aliases holds this server's aliases ("Room aliases"); creator may
-- delete them.
CREATE TABLE room_aliases (
    alias      {{ID}} PRIMARY KEY,
    room_id    {{ID}} NOT NULL,
    creator    {{ID}} NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- room_directory lists the rooms published in the room directory; a room
-- without a row is private.
CREATE TABLE room_directory (
    room_id    {{ID}} PRIMARY KEY,
    visibility TEXT NOT NULL
);

-- receipts keeps the latest receipt per (room, type, user, thread);
-- thread_id '' is an unthreaded receipt. pos is on the aux stream, for
-- /sync.
CREATE TABLE receipts (
    room_id      {{ID}} NOT NULL,
    receipt_type {{ID}} NOT NULL,
    user_id      {{ID}} NOT NULL,
    thread_id    {{ID}} NOT NULL,
    event_id     {{ID}} NOT NULL,
    ts           BIGINT NOT NULL,
    pos          BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_pos ON receipts (pos);

-- forgotten_rooms: rooms a user left and then forgot ("Leaving rooms").
CREATE TABLE forgotten_rooms (
    user_id {{ID}} NOT NULL,
    room_id {{ID}} NOT NULL,
    PRIMARY KEY (user_id, room_id)
){{WITHOUT_ROWID}};

-- redactions maps a redacted event to the redactions naming it, so events
-- are served redacted (Client-Server API, "Redactions").
CREATE TABLE redactions (
    redacts      {{ID}} NOT NULL,
    redaction_id {{ID}} NOT NULL,
    room_id      {{ID}} NOT NULL,
    PRIMARY KEY (redacts, redaction_id)
){{WITHOUT_ROWID}};
