-- Transactions received over federation (Server-Server API,
-- "Transactions"): a sender retries a transaction with the same ID until
-- it gets an answer, so the answer is kept and a replay gets it again
-- without its PDUs being processed twice.
CREATE TABLE fed_received_txns (
    origin      {{ID}} NOT NULL,
    txn_id      {{ID}} NOT NULL,
    response    {{BLOB}} NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX fed_received_txns_ts ON fed_received_txns (received_ts);

-- fed_cursor records how far through the event stream federation has
-- queued this server's events for other servers, so that events stored
-- just before a crash are queued after the restart.
CREATE TABLE fed_cursor (
    name {{ID}} PRIMARY KEY,
    pos  BIGINT NOT NULL
);
