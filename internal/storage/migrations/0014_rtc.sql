-- openid_tokens are the OpenID tokens users hand to third parties
-- (Client-Server API, "OpenID"; Server-Server API, "OpenID"), above all
-- to the MatrixRTC token service. They live an hour; keeping them here
-- rather than in memory lets a call started just before a restart get its
-- SFU token after it. Like access tokens they are stored as SHA-256
-- digests (hex). expires_ts is in milliseconds since the epoch.
CREATE TABLE openid_tokens (
    token_hash {{ID}} PRIMARY KEY,
    user_id    {{ID}} NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_user ON openid_tokens (user_id, expires_ts);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- rtc_rooms maps the LiveKit room names the token service hands out (a
-- hash of the Matrix room ID and the MatrixRTC slot, MSC4195) back to the
-- Matrix room, which the SFU cannot know: the call's world snapshot is
-- written into that room.
CREATE TABLE rtc_rooms (
    lk_room    {{ID}} PRIMARY KEY,
    room_id    {{ID}} NOT NULL,
    slot_id    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);

-- rtc_identities maps the LiveKit identities of a room's tokens to the
-- Matrix users they were minted for: the get_token form's identity is a
-- hash that cannot be read back.
CREATE TABLE rtc_identities (
    lk_room   {{ID}} NOT NULL,
    identity  {{ID}} NOT NULL,
    user_id   {{ID}} NOT NULL,
    device_id TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    PRIMARY KEY (lk_room, identity)
);
-- A user's identities are counted and the oldest forgotten when a new
-- token is minted (a bound on what one joined user can store).
CREATE INDEX rtc_identities_user ON rtc_identities (user_id, ts);
