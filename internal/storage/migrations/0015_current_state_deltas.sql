-- current_state_deltas records every change to a room's current state at
-- the stream position of the batch that made it (the batch's last event),
-- like Synapse's current_state_delta_stream. /sync's state_after (MSC4222)
-- reads it: state resolution can change the current state for a key
-- without any new event for that key, and only this table remembers
-- when. event_id NULL: the key left the state.
CREATE TABLE current_state_deltas (
    room_id    {{ID}} NOT NULL REFERENCES rooms (room_id),
    stream_pos BIGINT NOT NULL,
    type       {{ID}} NOT NULL,
    state_key  {{ID}} NOT NULL,
    event_id   {{ID}},
    PRIMARY KEY (room_id, stream_pos, type, state_key)
){{WITHOUT_ROWID}};

-- The current state of rooms stored before this table, each key at its
-- event's position: the best this schema's past can say.
INSERT INTO current_state_deltas (room_id, stream_pos, type, state_key, event_id)
SELECT c.room_id, e.stream_pos, c.type, c.state_key, c.event_id
FROM current_state c JOIN events e ON e.event_id = c.event_id;
