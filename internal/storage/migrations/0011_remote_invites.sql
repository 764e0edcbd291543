-- remote_invites holds what this server knows of a local user's
-- membership in a room it is not in (Server-Server API, "Inviting to a
-- room" and "Leaving Rooms (Rejecting Invites)"): the invite another
-- server had us countersign, and our rejection of it. Such a room has no
-- graph here, so /sync reads this table rather than the event stream.
--
-- membership is 'invite' while pending and 'leave' once rejected (event
-- is then our leave). state holds invite_room_state as received (a JSON
-- array of PDUs). events_pos is the event stream's head when the row was
-- written: a membership of the user in the room stored after it, such as
-- the join that accepts the invite, supersedes the row. pos is on the
-- aux stream, for incremental syncs.
CREATE TABLE remote_invites (
    user_id    {{ID}} NOT NULL,
    room_id    {{ID}} NOT NULL,
    version    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   {{ID}} NOT NULL,
    sender     {{ID}} NOT NULL,
    invite     {{BLOB}} NOT NULL,
    state      TEXT NOT NULL,
    event      {{BLOB}} NOT NULL,
    events_pos BIGINT NOT NULL,
    pos        BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX remote_invites_pos ON remote_invites (user_id, pos);
