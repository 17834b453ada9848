package redisstore

// The key schema, after the prefix: the key builders use these, and
// package migrations names the layout with them, so neither drifts from
// the other. {g} is a record's group tag (see Store).
const (
	// RecordInfix follows the group tag in a record's key: <prefix>{g}t:<id>.
	RecordInfix = "t:"
	// EpochInfix follows the group tag in a revocation epoch's key:
	// <prefix>{g}e:<key id>.
	EpochInfix = "e:"
	// MarkerInfix follows the group tag in a marker's key (PutMarker):
	// <prefix>{g}i:<16 raw name bytes>.
	MarkerInfix = "i:"
	// HistoryInfix follows the group tag in a record's history's key: the
	// list <prefix>{g}h:<16 raw ID bytes>, in the record's hash slot, with
	// the record's TTL.
	HistoryInfix = "h:"
	// LimitInfix follows the prefix in a rate limit's key: <prefix>rl:<what>,
	// inside the prefix, so a Redis ACL that allows only <prefix>* covers it.
	LimitInfix = "rl:"
	// KeyIDsKey follows the prefix in the set of partner key ids in use:
	// <prefix>keys (SetKeyIDs).
	KeyIDsKey = "keys"
)
