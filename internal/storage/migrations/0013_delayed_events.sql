-- delayed_events holds the events clients scheduled with
-- ?org.matrix.msc4140.delay= (MSC4140, "Scheduling a delayed event"), so
-- that a restart neither loses nor forgets them: a crashed client's
-- delayed call-membership "leave" must still be sent.
--
-- delay_id is the opaque, unguessable ID handed to the client. state_key
-- is NULL for a message event. content is the JSON body as received.
-- send_at is running_since + delay_ms (Unix ms); a restart moves it.
-- claimed_ts is 0 while scheduled and the claim time while a sender is
-- appending the event (the row goes once it is appended), so that the
-- timer and a "send" action never send one event twice.
CREATE TABLE delayed_events (
    delay_id   {{ID}} PRIMARY KEY,
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    room_id    {{ID}} NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT,
    content    TEXT NOT NULL,
    delay_ms   BIGINT NOT NULL,
    send_at    BIGINT NOT NULL,
    claimed_ts BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);
CREATE INDEX delayed_events_send_at ON delayed_events (send_at);
CREATE INDEX delayed_events_user ON delayed_events (user_id, send_at);
