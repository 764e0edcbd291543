-- The federation outbound queue (federation/internal/queue): what this
-- server still has to deliver to each destination server in transactions
-- (Server-Server API, "Transactions"). Rows are written before anything
-- is sent and deleted only once the destination has answered 200, so
-- nothing is lost across restarts or while a destination is down.
--
-- id orders each destination's queue; the queue allocates it, increasing
-- in commit order across both tables.

CREATE TABLE federation_queue_pdus (
    id          {{INT_PK}},
    destination {{ID}} NOT NULL,
    room_id     {{ID}} NOT NULL,
    event_id    {{ID}} NOT NULL
);
CREATE INDEX federation_queue_pdus_dest ON federation_queue_pdus (destination, id);

-- content is the EDU's content as the caller gave it.
CREATE TABLE federation_queue_edus (
    id          {{INT_PK}},
    destination {{ID}} NOT NULL,
    edu_type    {{ID}} NOT NULL,
    content     {{BLOB}} NOT NULL,
    enqueued_ts BIGINT NOT NULL
);
CREATE INDEX federation_queue_edus_dest ON federation_queue_edus (destination, id);

-- federation_destinations holds per destination:
--  - the transaction in flight: txn_id ('' if none), txn_ts (its
--    origin_server_ts, so a retry is byte-for-byte the same transaction)
--    and pdu_last, edu_last: it holds the destination's rows with IDs up to
--    these (a transaction always takes the oldest rows, so no row needs
--    marking); 0 if it holds none of that kind;
--  - the backoff: failures in a row, and retry_at, the time in ms before
--    which no attempt is made;
--  - catch_up, set by a failure and cleared when the backlog drains:
--    while it is set a long PDU backlog is cut to the newest PDU per room.
CREATE TABLE federation_destinations (
    destination {{ID}} PRIMARY KEY,
    txn_id      {{ID}} NOT NULL DEFAULT '',
    txn_ts      BIGINT NOT NULL DEFAULT 0,
    pdu_last    BIGINT NOT NULL DEFAULT 0,
    edu_last    BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    retry_at    BIGINT NOT NULL DEFAULT 0,
    catch_up    BOOLEAN NOT NULL DEFAULT FALSE
);
