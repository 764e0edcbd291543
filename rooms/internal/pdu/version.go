package pdu

import "sort"

// RedactionAlgorithm names which list of kept keys redaction uses.
type RedactionAlgorithm uint8

// Redaction algorithms of the supported versions.
const (
	// RedactV9 is the algorithm of room versions 9 and 10 (rooms fragment
	// "v9-redactions").
	RedactV9 RedactionAlgorithm = iota + 9
	// RedactV11 is the algorithm of room versions 11 and 12.
	RedactV11 RedactionAlgorithm = 11
)

// StateResAlgorithm names the state resolution algorithm.
type StateResAlgorithm uint8

// State resolution algorithms of the supported versions.
const (
	// StateResV2 is the algorithm of room versions 2 to 11.
	StateResV2 StateResAlgorithm = 2
	// StateResV2_1 is the version 12 revision: iterative auth checks start
	// from an empty map, and the full conflicted set includes the
	// conflicted state subgraph.
	StateResV2_1 StateResAlgorithm = 21
)

// Version is what changes between room versions, as data. Every behaviour
// that differs between 10, 11 and 12 is a field here, so code branches on
// a property, never on a version string.
type Version struct {
	ID        string
	Redaction RedactionAlgorithm
	StateRes  StateResAlgorithm
	// RedactsInContent: m.room.redaction carries "redacts" in content, not
	// at the top level (v11, MSC2174).
	RedactsInContent bool
	// CreatorIsSender: the creator is the create event's sender; content
	// no longer needs "creator" (v11, MSC2175).
	CreatorIsSender bool
	// RoomIDIsCreateHash: the room ID is "!" + the create event's
	// reference hash; the create event has no room_id and is never listed
	// in auth_events (v12, MSC4291).
	RoomIDIsCreateHash bool
	// PrivilegedCreators: the create sender and additional_creators have
	// infinite power level and may not appear in power_levels.users (v12,
	// MSC4289).
	PrivilegedCreators bool
	// KnockRestricted: the knock_restricted join rule exists (v10).
	KnockRestricted bool
	// IntegerPowerLevels: power level values must be JSON integers, not
	// strings (v10, MSC3667).
	IntegerPowerLevels bool
}

var versionTable = map[string]*Version{
	"10": {
		ID: "10", Redaction: RedactV9, StateRes: StateResV2,
		KnockRestricted: true, IntegerPowerLevels: true,
	},
	"11": {
		ID: "11", Redaction: RedactV11, StateRes: StateResV2,
		RedactsInContent: true, CreatorIsSender: true,
		KnockRestricted: true, IntegerPowerLevels: true,
	},
	"12": {
		ID: "12", Redaction: RedactV11, StateRes: StateResV2_1,
		RedactsInContent: true, CreatorIsSender: true,
		RoomIDIsCreateHash: true, PrivilegedCreators: true,
		KnockRestricted: true, IntegerPowerLevels: true,
	},
}

// DefaultVersion is the room version of newly created rooms.
const DefaultVersion = "12"

// LookupVersion returns the behaviour of a supported room version.
func LookupVersion(id string) (*Version, bool) {
	v, ok := versionTable[id]
	return v, ok
}

// MustVersion is LookupVersion for constants in code and tests.
func MustVersion(id string) *Version {
	v, ok := versionTable[id]
	if !ok {
		panic("pdu: unsupported room version " + id)
	}
	return v
}

// SupportedVersions lists the supported room versions in ascending order.
func SupportedVersions() []string {
	ids := make([]string, 0, len(versionTable))
	for id := range versionTable {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) < len(ids[j]) || len(ids[i]) == len(ids[j]) && ids[i] < ids[j] })
	return ids
}
