-- Accounts, devices and sessions (Client-Server API, "Client
-- authentication" and "Device management").

-- aux_stream holds the last position of the aux stream (storage.Tx.NextPos):
-- one counter shared by every non-event table that /sync reads as a stream.
CREATE TABLE aux_stream (pos BIGINT NOT NULL);
INSERT INTO aux_stream (pos) VALUES (0);

-- localpart is stored as given (already lower-cased and validated);
-- password_hash is empty for accounts that cannot log in with a password.
CREATE TABLE users (
    user_id       {{ID}} PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL,
    displayname   TEXT,
    avatar_url    TEXT
);

CREATE TABLE devices (
    user_id      {{ID}} NOT NULL,
    device_id    {{ID}} NOT NULL,
    display_name TEXT,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored as SHA-256 digests: a leaked database does not
-- leak sessions.
CREATE TABLE access_tokens (
    token_hash {{ID}} PRIMARY KEY,
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

-- Profile fields other than displayname and avatar_url (Client-Server API,
-- "Profiles", extended in v1.16): m.tz and custom namespaced keys, each
-- value a JSON text.
CREATE TABLE profile_fields (
    user_id {{ID}} NOT NULL,
    field   {{ID}} NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

-- Account data (Client-Server API, "Client Config"). room_id is '' for
-- global account data. content is the JSON object as the client sent it.
-- /sync reads the table as a stream: pos comes from the aux stream and is
-- renewed on every write, so a changed entry is delivered again.
CREATE TABLE account_data (
    user_id {{ID}} NOT NULL,
    room_id {{ID}} NOT NULL,
    type    {{ID}} NOT NULL,
    content TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_pos ON account_data (user_id, pos);

-- Filters (Client-Server API, "Filtering"): filter_id counts up per user
-- from 0, as Synapse's do; json is the filter as the client sent it.
CREATE TABLE filters (
    user_id   {{ID}} NOT NULL,
    filter_id BIGINT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Registration tokens (Client-Server API, "Token-authenticated
-- registration"), with Synapse's accounting: pending counts the
-- user-interactive auth sessions that passed the token stage and have not
-- registered yet (they live in memory, so it is reset at start-up),
-- completed the registrations made with it. uses_allowed and expiry_time
-- (ms since the epoch) NULL: unlimited.
CREATE TABLE registration_tokens (
    token        {{ID}} PRIMARY KEY,
    uses_allowed BIGINT,
    pending      BIGINT NOT NULL DEFAULT 0,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_time  BIGINT
);
