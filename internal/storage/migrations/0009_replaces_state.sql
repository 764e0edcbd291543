-- replaces_state answers "the state before an event" (server-server API,
-- GET /state_ids, send_join) without recomputing it: the state after an
-- accepted state event is the state before it with the event's own
-- (type, state_key) changed, and this column keeps what that entry held
-- before ('' = nothing). NULL: not a placed, accepted state event, or a row
-- written before this migration.
ALTER TABLE events ADD COLUMN replaces_state {{ID}};
