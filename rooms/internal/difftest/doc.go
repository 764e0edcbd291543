// Package difftest holds differential tests of the room event core: pdu
// (canonical JSON, content and reference hashes, event IDs, redaction,
// signatures), auth (authorisation rules and auth events selection) and
// stateres (state resolution v2) are run side by side with an independent
// implementation, gomatrixserverlib, over randomly generated but
// deterministic event graphs (forks, merges, power struggles, deliberately
// invalid events) for room versions 10 and 11.
//
// gomatrixserverlib is imported by the tests only; none of its code is
// copied into Plexus. Where it departs from the spec, the test names the
// case, cites the spec text and checks that Plexus follows the spec
// (exceptions_test.go); every other disagreement fails the test with the
// seed, the event and both verdicts.
//
// Where the two disagree on state resolution, a literal transcription of
// the spec's algorithm (specres_test.go) adjudicates: it must reproduce
// Plexus's result with the spec's auth verdicts, and gomatrixserverlib's
// with gomatrixserverlib's verdicts and its named departures emulated.
//
// A failure names its seed; rerun one graph with
//
//	go test ./rooms/internal/difftest -run 'TestDifferential/v11/seed=17$' -v
//
// With DIFFTEST_DUMP=dir set, the inputs of an unexplained state
// resolution disagreement are written to dir as JSON for offline study;
// with DIFFTEST_EXPLAIN=1, the first event excused by each auth exception
// is logged.
//
// The package has no non-test code apart from this file.
package difftest
