// Package signing signs and verifies JSON objects the Matrix way (spec
// appendices, "Signing JSON" and "Checking for a Signature"): ed25519 over
// the canonical JSON of the object without its "signatures" and "unsigned"
// members, signatures in unpadded base64 under
// signatures.<entity>.<algorithm>:<key id>.
package signing
