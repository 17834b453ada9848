package migrations

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store/redisstore"
)

// Layout is the keyspace layout this binary reads and writes. Layout 2
// added taken tombstones, which a layout-1 binary cannot read, markers,
// and moved the rate limits inside the prefix (see the package
// documentation).
const Layout = 2

// The key schema, in the words of the package documentation, from the
// store's own key kinds.
const (
	recordKey = "<prefix>{g}" + redisstore.RecordInfix + "<id>"
	epochKey  = "<prefix>{g}" + redisstore.EpochInfix + "<key id>"
	markerKey = "<prefix>{g}" + redisstore.MarkerInfix + "<name>"
	// Within layout 2 (see the package documentation).
	historyKey = "<prefix>{g}" + redisstore.HistoryInfix + "<id>"
	auditKey   = "<prefix>" + redisstore.AuditKey
)

// Errors of Check and Apply; the wrapped text tells the operator what to do.
var (
	// ErrOutdated means Redis holds an older layout (or none): run migrate.
	ErrOutdated = errors.New("migrations: Redis layout is older than this binary")
	// ErrTooNew means Redis was migrated by a newer tokensvc.
	ErrTooNew = errors.New("migrations: Redis layout is newer than this binary")
)

// step moves the layout to version. apply runs on every master.
type step struct {
	version int
	name    string
	apply   func(ctx context.Context, c redis.Cmdable, prefix string) error
}

// steps returns every step in version order.
func steps() []step {
	return []step{
		{version: 1, name: "token records as " + recordKey + " strings with a TTL, revocation epochs as " + epochKey + " per group"},
		// The version alone keeps layout-1 binaries, which read a taken
		// tombstone as a corrupt record, from starting.
		{version: 2, name: "taken tombstones (record state 3, unreadable to layout 1), markers as " + markerKey + " strings with a TTL, " + rateLimitsStep, apply: dropOldLimits},
	}
}

// raise sets the layout key to ARGV[1] unless it already holds as much.
var raise = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if cur < want then
  redis.call('SET', KEYS[1], ARGV[1])
  return want
end
return cur`)

func layoutKey(prefix string) string { return prefix + "layout" }

// Version reads the layout version held by Redis; 0 when there is none.
func Version(ctx context.Context, c redis.UniversalClient, prefix string) (int, error) {
	s, err := c.Get(ctx, layoutKey(prefix)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("migrations: read layout: %w", err)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("migrations: layout key %q holds %q, not a version", layoutKey(prefix), s)
	}
	return v, nil
}

// Check returns nil when Redis holds exactly Layout, and otherwise an error
// that names what to run.
func Check(ctx context.Context, c redis.UniversalClient, prefix string) error {
	v, err := Version(ctx, c, prefix)
	switch {
	case err != nil:
		return err
	case v < Layout:
		return fmt.Errorf("%w: Redis has layout %d under prefix %q, this binary needs %d: run `tokensvc migrate` with the same TOKENSVC_REDIS_URL and TOKENSVC_REDIS_PREFIX", ErrOutdated, v, prefix, Layout)
	case v > Layout:
		return fmt.Errorf("%w: Redis has layout %d under prefix %q, this binary understands %d: deploy a newer tokensvc", ErrTooNew, v, prefix, Layout)
	}
	return nil
}

// Result says what Apply did.
type Result struct {
	From, To int
	Applied  []string
}

// Apply brings Redis to Layout. It is idempotent and safe to run from
// several processes at once.
func Apply(ctx context.Context, c redis.UniversalClient, prefix string) (Result, error) {
	from, err := Version(ctx, c, prefix)
	if err != nil {
		return Result{}, err
	}
	res := Result{From: from, To: from}
	if from > Layout {
		return res, fmt.Errorf("%w: Redis has layout %d, this binary understands %d", ErrTooNew, from, Layout)
	}
	for _, s := range steps() {
		if s.version <= from {
			continue
		}
		if s.apply != nil {
			if err := onEveryMaster(ctx, c, func(ctx context.Context, node redis.Cmdable) error {
				return s.apply(ctx, node, prefix)
			}); err != nil {
				return res, fmt.Errorf("migrations: step %d (%s): %w", s.version, s.name, err)
			}
		}
		if err := raise.Run(ctx, c, []string{layoutKey(prefix)}, s.version).Err(); err != nil {
			return res, fmt.Errorf("migrations: record layout %d: %w", s.version, err)
		}
		res.To = s.version
		res.Applied = append(res.Applied, fmt.Sprintf("%d: %s", s.version, s.name))
	}
	return res, nil
}

// onEveryMaster runs fn on each master of a Cluster, or once on any other
// client (one node, or Sentinel's current primary).
func onEveryMaster(ctx context.Context, c redis.UniversalClient, fn func(context.Context, redis.Cmdable) error) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return fn(ctx, node) })
	}
	return fn(ctx, c)
}
