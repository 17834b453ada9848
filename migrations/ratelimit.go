package migrations

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store/redisstore"
)

// oldLimitPrefix is where redis_rate put tokensvc's rate limits, in front
// of the configured prefix: rate:<prefix>rl:<what>.
const oldLimitPrefix = "rate:"

// rateLimitsStep names the step that moved the rate limits inside the prefix.
var rateLimitsStep = fmt.Sprintf("rate limits at <prefix>%s<what>; the old %s<prefix>%s* keys deleted",
	redisstore.LimitInfix, oldLimitPrefix, redisstore.LimitInfix)

// dropOldLimits deletes the rate limits that tokensvc kept at
// rate:<prefix>rl:<what>, outside the prefix, on one node. GCRA state is
// disposable: nothing reads the old keys, and deleting them (rather than
// moving them) only forgets recent events, so each limit restarts with a
// full bucket. Left alone they would expire within their limit's period.
func dropOldLimits(ctx context.Context, c redis.Cmdable, prefix string) error {
	match := oldLimitPrefix + globEscape(prefix+redisstore.LimitInfix) + "*"
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			// One DEL per key: on a Cluster node, keys of several slots
			// may not share a command.
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Del(ctx, k)
				}
				return nil
			})
			if redis.HasErrorPrefix(err, "NOPERM") {
				return fmt.Errorf("%w: this Redis user may not delete the old rate-limit keys %s, outside the prefix: delete them as a user that may (redis-cli --scan --pattern '%s' | xargs redis-cli del), or wait for them to expire (within the longest rate-limit period) and run migrate again", err, match, match)
			}
			if err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// globEscape quotes the characters that SCAN MATCH reads as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\*?[]`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
