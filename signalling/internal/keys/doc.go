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
package keys
