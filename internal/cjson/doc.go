// Package cjson implements Matrix canonical JSON: a strict parser and a
// canonical encoder.
//
// Matrix hashes and signs JSON by its canonical encoding (spec appendices,
// "Canonical JSON"): the shortest UTF-8 encoding, object keys sorted by
// Unicode code point, integers only in [-(2^53)+1, (2^53)-1], no fractions,
// no exponents, no insignificant whitespace. Going through encoding/json
// would lose information (numbers become float64, duplicate keys collapse
// silently, invalid UTF-8 is replaced), so events are parsed here into a
// Value tree that keeps every received value exactly, and re-encoded from it.
package cjson
