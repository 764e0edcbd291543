-- backward_extremities are the events a room's placed events cite as prev
-- events that are not placed here: the edge of the history this server
-- holds, from which backfilling goes on (server-server API, "Backfilling
-- and retrieving missing events"). A federated join adds its prev events;
-- a backfilled batch removes the events it places and adds their prev
-- events that are still missing.
CREATE TABLE backward_extremities (
    room_id  {{ID}} NOT NULL,
    event_id {{ID}} NOT NULL,
    PRIMARY KEY (room_id, event_id)
){{WITHOUT_ROWID}};
