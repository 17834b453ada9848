package redisstore

// For the external tests: the scripts' prelude and the envelope encoder.
var (
	LuaParse     = luaParse
	EncodeRecord = encodeRecord
)
