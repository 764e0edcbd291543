-- End-to-end encryption and send-to-device messaging (Client-Server API,
-- "End-to-End Encryption" and "Send-to-Device messaging"). The server
-- never decrypts anything: every key object, signature and message is
-- kept as the bytes the client sent, because clients verify signatures
-- over them.

-- Device identity keys from POST /keys/upload, one object per device.
CREATE TABLE e2e_device_keys (
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    key_json   {{BLOB}} NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. seq orders them per device by upload call,
-- the order in which /keys/claim hands them out.
CREATE TABLE e2e_one_time_keys (
    user_id   {{ID}} NOT NULL,
    device_id {{ID}} NOT NULL,
    algorithm {{ID}} NOT NULL,
    key_id    {{ID}} NOT NULL,
    seq       BIGINT NOT NULL,
    key_json  {{BLOB}} NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, seq);

-- At most one fallback key per device and algorithm; used turns TRUE
-- when /keys/claim hands it out for want of one-time keys.
CREATE TABLE e2e_fallback_keys (
    user_id   {{ID}} NOT NULL,
    device_id {{ID}} NOT NULL,
    algorithm {{ID}} NOT NULL,
    key_id    {{ID}} NOT NULL,
    key_json  {{BLOB}} NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing;
-- key_id is the unpadded base64 public key.
CREATE TABLE e2e_cross_signing_keys (
    user_id    {{ID}} NOT NULL,
    key_type   {{ID}} NOT NULL,
    key_id     {{ID}} NOT NULL,
    key_json   {{BLOB}} NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures from POST /keys/signatures/upload: signer_id signed the key
-- target_key_id (a device ID or a cross-signing public key) of
-- target_user_id with its key signer_key_id ("ed25519:...").
CREATE TABLE e2e_signatures (
    target_user_id {{ID}} NOT NULL,
    target_key_id  {{ID}} NOT NULL,
    signer_id      {{ID}} NOT NULL,
    signer_key_id  {{ID}} NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_id, signer_key_id)
);

-- The device list stream: user_id's devices or cross-signing keys changed
-- at aux position pos. viewer is '' when every user sharing a room with
-- user_id should hear of it, or the one user who should (a user-signing
-- signature only changes its signer's view).
CREATE TABLE e2e_device_list_changes (
    pos     {{INT_PK}},
    user_id {{ID}} NOT NULL,
    viewer  {{ID}} NOT NULL DEFAULT ''
);

-- Send-to-device messages awaiting delivery to a local device, each the
-- whole event as /sync returns it ({"content","sender","type"}).
CREATE TABLE to_device_inbox (
    pos        {{INT_PK}},
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    event_json {{BLOB}} NOT NULL
);
CREATE INDEX to_device_inbox_device ON to_device_inbox (user_id, device_id, pos);

-- Messages for users on other servers, one row per destination and
-- request, in the shape of an m.direct_to_device EDU's messages field,
-- for federation to send.
CREATE TABLE to_device_outbox (
    pos         {{INT_PK}},
    destination {{ID}} NOT NULL,
    sender      {{ID}} NOT NULL,
    event_type  {{ID}} NOT NULL,
    message_id  {{ID}} NOT NULL,
    messages    {{BLOB}} NOT NULL
);
CREATE INDEX to_device_outbox_destination ON to_device_outbox (destination, pos);

-- Transaction IDs of PUT /sendToDevice already processed, scoped to the
-- device and endpoint ("Transaction identifiers").
CREATE TABLE to_device_txns (
    user_id    {{ID}} NOT NULL,
    device_id  {{ID}} NOT NULL,
    event_type {{ID}} NOT NULL,
    txn_id     {{ID}} NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, event_type, txn_id)
);

-- Server-side key backups. Versions count up per user and are never
-- reused: a deleted version keeps its row with deleted = TRUE.
CREATE TABLE e2e_backup_versions (
    user_id   {{ID}} NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data {{BLOB}} NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_backup_keys (
    user_id             {{ID}} NOT NULL,
    version             BIGINT NOT NULL,
    room_id             {{ID}} NOT NULL,
    session_id          {{ID}} NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        {{BLOB}} NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
