package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/server/audit"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// TOKENSVC_AUDIT's words; any other value is a file path.
const (
	auditOff    = "off"
	auditStdout = "stdout"
	auditRedis  = "redis"
)

// openAudit is the sink TOKENSVC_AUDIT names, nil when off, and what
// closes it. c is the store's Redis client, nil on the embedded store.
func openAudit(cfg config, stdout io.Writer, c redis.UniversalClient) (audit.Sink, func() error, error) {
	none := func() error { return nil }
	switch cfg.Audit {
	case auditOff:
		return nil, none, nil
	case auditStdout:
		return audit.NewWriter(stdout), none, nil
	case auditRedis:
		if c == nil {
			return nil, nil, errors.New("configuration TOKENSVC_AUDIT: redis needs TOKENSVC_REDIS_URL")
		}
		s, err := redisstore.NewAuditStream(c, redisstore.AuditOptions{Prefix: cfg.RedisPrefix, MaxLen: cfg.AuditMaxLen})
		if err != nil {
			return nil, nil, fmt.Errorf("configuration TOKENSVC_AUDIT: %w", err)
		}
		return s, none, nil
	}
	f, err := audit.OpenFile(cfg.Audit)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration TOKENSVC_AUDIT: %w", err)
	}
	return f, f.Close, nil
}

const auditUsage = `Usage: tokensvc [-config FILE] audit [--follow] [--since DURATION] [--token-id ID] [--key ID] [--event KIND,...]

Prints the audit trail kept in Redis (TOKENSVC_AUDIT=redis: the stream
<prefix>audit of TOKENSVC_REDIS_URL and TOKENSVC_REDIS_PREFIX), oldest
first, one JSON line per event, as tokensvc wrote it. Filters combine.

Flags:
`

// auditFilter says which events auditCommand prints.
type auditFilter struct {
	tokenID, key string
	events       []string
}

// match reads just enough of a line to filter it.
func (f auditFilter) match(line string) bool {
	if f.tokenID == "" && f.key == "" && len(f.events) == 0 {
		return true
	}
	var e struct {
		Event      string `json:"event"`
		KeyID      string `json:"key_id"`
		TokenID    string `json:"token_id"`
		NewTokenID string `json:"new_token_id"`
	}
	if json.Unmarshal([]byte(line), &e) != nil {
		return false
	}
	return (f.tokenID == "" || e.TokenID == f.tokenID || e.NewTokenID == f.tokenID) &&
		(f.key == "" || e.KeyID == f.key) &&
		(len(f.events) == 0 || slices.Contains(f.events, e.Event))
}

// auditCommand is `tokensvc audit`: the stream's events, filtered, as JSON
// lines on stdout; with --follow it goes on printing new ones until ctx
// ends.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, configFile string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokensvc audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	follow := fs.Bool("follow", false, "after the events so far, print new ones as they come, until interrupted")
	since := fs.Duration("since", 0, "only events of the last DURATION (e.g. 1h); default: all the stream keeps")
	var f auditFilter
	fs.StringVar(&f.tokenID, "token-id", "", "only events about this token id (token_id or new_token_id)")
	fs.StringVar(&f.key, "key", "", "only events about this partner key id")
	events := fs.String("event", "", "only events of these kinds, comma-separated ("+kindList()+")")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit takes no arguments, got %q", fs.Args())
	}
	for _, k := range strings.Split(*events, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.Contains(audit.Kinds(), audit.Kind(k)) {
			return fmt.Errorf("audit: unknown event %q (want %s)", k, kindList())
		}
		f.events = append(f.events, k)
	}
	cfg, err := loadConfig(getenv, configFile)
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		return errors.New("audit reads the Redis stream: set TOKENSVC_REDIS_URL (and TOKENSVC_REDIS_PREFIX) as for serve")
	}
	c, _, err := newRedisClient(cfg.RedisURL, cfg.StoreTimeout, cfg.RedisCA)
	if err != nil {
		return fmt.Errorf("configuration TOKENSVC_REDIS_URL: %w", err)
	}
	defer c.Close()
	stream, err := redisstore.NewAuditStream(c, redisstore.AuditOptions{Prefix: cfg.RedisPrefix})
	if err != nil {
		return err
	}
	after := "0"
	if *since > 0 {
		after = fmt.Sprintf("%d-0", time.Now().Add(-*since).UnixMilli())
	}
	const page = 1000
	for {
		block := time.Duration(0)
		if *follow {
			block = 5 * time.Second
		}
		entries, err := stream.Read(ctx, after, page, block)
		if ctx.Err() != nil {
			return nil // interrupted: --follow ends here
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			after = e.ID
			if f.match(e.Line) {
				if _, err := fmt.Fprintln(stdout, e.Line); err != nil {
					return err
				}
			}
		}
		if len(entries) < page && !*follow {
			return nil
		}
	}
}

func kindList() string {
	var names []string
	for _, k := range audit.Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}
