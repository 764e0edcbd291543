// Package rtcauth is the MatrixRTC side of the client API: the token
// service that Element Call and other MatrixRTC clients ask for an SFU
// access token, the OpenID tokens they prove their identity with, and the
// reading of call membership state.
//
// The token service speaks the protocol of Element's lk-jwt-service (the
// MatrixRTC Authorization Service of MSC4195), so a client configured
// with our livekit_service_url cannot tell the difference:
//
//   - POST {livekit_service_url}/sfu/get, the legacy form, takes
//     {room, openid_token, device_id}; the LiveKit room is the hash of the
//     Matrix room ID and the slot "m.call#ROOM", the identity
//     "@user:server:DEVICE".
//   - POST {livekit_service_url}/get_token takes {room_id, slot_id,
//     openid_token, member: {id, claimed_user_id, claimed_device_id}};
//     room and identity are hashes (RoomAlias, Identity) that reveal
//     neither the room nor the user to the SFU.
//   - GET {livekit_service_url}/healthz answers 200.
//
// Both answer {url, jwt}. The OpenID token is checked locally when it is
// ours and through GET /_matrix/federation/v1/openid/userinfo on its
// server otherwise. Unlike lk-jwt-service, which trusts any valid OpenID
// token, the caller must also be joined to the Matrix room (as our copy of
// the room has it): a token for a room's call is only for its members.
// Every token lets its holder publish and subscribe, as lk-jwt-service's
// do; local users also get its "full access" (create the SFU room),
// users of other servers its "restricted" access (join a room that is
// running): whether each participant publishes to their own server's SFU
// (MSC4195's multi-SFU calls) or all to the oldest member's (MSC4143's
// "oldest_membership"), a call is started only by this server's users.
//
// The service needs no account, so what a request can cost is bounded:
// requests per client address, fields to the spec's 255 bytes, OpenID
// checks at other servers in flight at once (MaxRemoteChecks; the
// matrix_server_name of a loopback or private IP literal is refused by
// federation before any connection), and the identities remembered per
// user.
//
// LiveMemberships reads org.matrix.msc3401.call.member and m.rtc.member
// state as Element Call (matrix-js-sdk's CallMembership) does: empty
// content is a member who left, and a membership past its expiry is gone.
package rtcauth
