// Package keys implements the Client-Server API's end-to-end encryption
// support and send-to-device messaging: device and one-time key upload,
// query and claim (Client-Server API, "Key management API"), device list
// tracking (/keys/changes and the device_lists data of /sync),
// cross-signing keys and signatures ("Cross-signing"), server-side room key
// backups ("Server-side key backups") and PUT /sendToDevice
// ("Send-to-Device messaging").
//
// The server never sees plaintext and never re-encodes what clients sign:
// every key object is stored as the bytes received and served back as
// those bytes, with only the "signatures" member (merged with signatures
// from /keys/signatures/upload) and the "unsigned" member spliced in (see
// rawjson.go). Clients verify signatures over the canonical form, which
// such splicing leaves unchanged.
//
// Rows that /sync reads incrementally (to-device messages, device list
// changes) carry positions on the shared aux stream, and every commit that
// adds one wakes the affected users through the stream.Hub. The /sync
// engine reads them through [Keys.ToDevice], [Keys.AckToDevice],
// [Keys.DeviceListChanges], [Keys.OneTimeKeyCounts] and
// [Keys.UnusedFallbackKeyTypes].
//
// Users on other servers are reached through [Deps.Remote] (edu.go,
// remotekeys.go): /keys/query and /keys/claim ask their servers, with a
// failure for each that does not answer in time; our users' device and
// cross-signing key changes go out as m.device_list_update and
// m.signing_key_update EDUs; to-device messages for them leave through
// to_device_outbox as m.direct_to_device. EDUs from other servers arrive
// through [Keys.ReceiveToDevice] and [Keys.RemoteDevicesChanged] and take
// the same tables and wake-ups to /sync as local changes. Remote keys are
// not cached: a query always goes to the user's server.
package keys
