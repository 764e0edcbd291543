-- partial_state_rooms lists the rooms this server joined with a partial
-- state (Server-Server API, PUT /send_join v2 with omit_members: the
-- resident left the m.room.member events out of the state before the
-- join). join_event is that join, whose full state before it is fetched
-- in the background (GET /state at the join); servers is servers_in_room
-- of the send_join answer, a JSON array, the servers asked for it and the
-- destinations of our events meanwhile. The row goes when the state is
-- complete.
CREATE TABLE partial_state_rooms (
    room_id    {{ID}} PRIMARY KEY REFERENCES rooms (room_id),
    join_event {{ID}} NOT NULL,
    servers    TEXT NOT NULL
);
