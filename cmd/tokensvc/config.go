package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.yaml.in/yaml/v3"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

// config is everything the service reads from its environment.
type config struct {
	Addr          string
	RedisURL      string
	RedisPrefix   string
	StoreTimeout  time.Duration
	APIKeys       string
	APIKeysReload time.Duration
	// KeepRemovedKeyTokens: see server.Config.
	KeepRemovedKeyTokens bool
	TokenTTL             time.Duration
	MaxTokenTTL          time.Duration
	MaxBodyBytes         int64
	LogLevel             slog.Level
	ShutdownTimeout      time.Duration
	AdminToken           string
	IdempotencyKey       []byte
	ForwardCookie        string
	ForwardFields        []string
	ForwardSecret        string
	ForwardCacheTTL      time.Duration
	MaxBatch             int
	MaxSession           time.Duration
	Replicas             int
	AutoPipeline         bool
	GenerateRate         ratelimit.Limit
	FailureRate          ratelimit.Limit
	TrustedProxies       []*net.IPNet
	TLSCert              string
	TLSKey               string
	RedisCA              string
	MetricsAddr          string
	// Audit is where the audit trail goes: auditOff, auditStdout,
	// auditRedis or a file path; see audit.go.
	Audit         string
	AuditRequired bool
	AuditMaxLen   int64
	// TokenHistory: tokens are minted with a history (server.Config.NoTokenHistory).
	TokenHistory bool
	// Tracing is on when the standard OTEL_* variables ask for traces
	// (tracingWanted); they are not settings of this table.
	Tracing bool
	// SpanExporter, set by tests only, replaces the OTLP exporter.
	SpanExporter sdktrace.SpanExporter
}

// setting is one configuration value: where it is read from, its default,
// and how it is parsed. settings() is the only list of them; -h and the
// README's table are printed from it. A default that a package applies
// itself (server, store, keys) is read from that package's constant, not
// written again here.
type setting struct {
	env, yaml, def, help string
	set                  func(c *config, v string) error
}

func settings() []setting {
	return []setting{
		{"TOKENSVC_ADDR", "server.addr", ":8080", "listen address (host:port)",
			func(c *config, v string) error { c.Addr = v; return nil }},
		{"TOKENSVC_REDIS_URL", "redis.url", "", "Redis URL in go-redis's dialect (redis://, rediss:// or unix://); empty = embedded in-memory store (one instance only); see README for Sentinel and Cluster",
			func(c *config, v string) error { c.RedisURL = v; return nil }},
		{"TOKENSVC_REDIS_PREFIX", "redis.prefix", redisstore.DefaultPrefix, "prefix of every Redis key",
			func(c *config, v string) error { c.RedisPrefix = v; return nonEmpty(v) }},
		{"TOKENSVC_STORE_TIMEOUT", "redis.timeout", durationText(server.DefaultStoreTimeout), "bound on each store operation; past it the request is answered 503",
			durationInto(func(c *config) *time.Duration { return &c.StoreTimeout })},
		{"TOKENSVC_DURABILITY", "redis.durability", "none", "none: a write is acknowledged by the Redis primary; replica:N: also by N replicas (Redis WAIT) before the answer, else 503",
			func(c *config, v string) error {
				if v == "none" {
					c.Replicas = 0
					return nil
				}
				n, err := strconv.Atoi(strings.TrimPrefix(v, "replica:"))
				if !strings.HasPrefix(v, "replica:") || err != nil || n < 1 || n > 16 {
					return errors.New("want none or replica:N with N from 1 to 16")
				}
				c.Replicas = n
				return nil
			}},
		{"TOKENSVC_REDIS_AUTOPIPELINE", "redis.autopipeline", "on", "on: concurrent requests' Redis commands share round trips (go-redis automatic pipelining); off: one round trip each",
			func(c *config, v string) (err error) { c.AutoPipeline, err = parseOnOff(v); return err }},
		{"TOKENSVC_API_KEYS", "server.api_keys", "", "partner keys: one key, a comma-separated list, a YAML/JSON list of key objects, file:///path or an http(s):// key server; empty = a random development key",
			func(c *config, v string) error { c.APIKeys = v; return nil }},
		{"TOKENSVC_API_KEYS_RELOAD_SEC", "server.api_keys_reload_sec", strconv.Itoa(int(keys.DefaultReloadEvery / time.Second)), "seconds between reloads of a file or HTTP key source",
			func(c *config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return errors.New("want a whole number of seconds, at least 1")
				}
				c.APIKeysReload = time.Duration(n) * time.Second
				return nil
			}},
		{"TOKENSVC_REMOVED_KEY_TOKENS", "server.removed_key_tokens", "revoke", "tokens of a partner key removed from the key source: revoke (for good, in the store: a key that comes back does not bring them back) or keep (refused while the key is absent, working again if it comes back)",
			func(c *config, v string) error {
				switch v {
				case "revoke":
					c.KeepRemovedKeyTokens = false
				case "keep":
					c.KeepRemovedKeyTokens = true
				default:
					return errors.New("want revoke or keep")
				}
				return nil
			}},
		{"TOKENSVC_TOKEN_TTL", "token.ttl", durationText(server.DefaultTokenTTL), "token lifetime when the request names none",
			durationInto(func(c *config) *time.Duration { return &c.TokenTTL })},
		{"TOKENSVC_MAX_TOKEN_TTL", "token.max_ttl", durationText(server.DefaultMaxTokenTTL), "longest token lifetime a request may ask for",
			durationInto(func(c *config) *time.Duration { return &c.MaxTokenTTL })},
		{"TOKENSVC_MAX_BODY_BYTES", "server.max_body_bytes", strconv.Itoa(server.DefaultMaxBodyBytes), "largest /generate body, in bytes",
			func(c *config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 2 || n > 16<<20 {
					return errors.New("want a number of bytes from 2 to 16777216")
				}
				c.MaxBodyBytes = n
				return nil
			}},
		{"TOKENSVC_MAX_SESSION_LIFETIME", "token.max_session_lifetime", durationText(server.DefaultMaxSession), "longest life of a refresh chain, from its first token",
			durationInto(func(c *config) *time.Duration { return &c.MaxSession })},
		{"TOKENSVC_MAX_BATCH", "server.max_batch", strconv.Itoa(server.DefaultMaxBatch), "most tokens in one /verify/batch",
			func(c *config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 10000 {
					return errors.New("want a number from 1 to 10000")
				}
				c.MaxBatch = n
				return nil
			}},
		{"TOKENSVC_ADMIN_TOKEN", "server.admin_token", "", "secret for the X-Admin-Token header of /admin/...; empty = admin API off (at least 16 characters)",
			func(c *config, v string) error {
				if v != "" && len(v) < 16 {
					return errors.New("must be at least 16 characters")
				}
				c.AdminToken = v
				return nil
			}},
		{"TOKENSVC_IDEMPOTENCY_SECRET", "server.idempotency_secret", "", "secret (at least 32 characters) deriving Idempotency-Key tokens; the same on every instance. Empty with Redis = Idempotency-Key refused; with the embedded store a random one is made",
			func(c *config, v string) error {
				if v != "" && len(v) < 32 {
					return errors.New("must be at least 32 characters")
				}
				c.IdempotencyKey = []byte(v)
				return nil
			}},
		{"TOKENSVC_FORWARD_COOKIE", "forward.cookie", "", "cookie that /auth reads the token from (besides headers and X-Original-URI)",
			func(c *config, v string) error { c.ForwardCookie = v; return nil }},
		{"TOKENSVC_FORWARD_FIELDS", "forward.fields", "", "comma-separated bundle fields /auth sends as X-Token-<Field> headers",
			func(c *config, v string) error {
				c.ForwardFields = nil
				for _, f := range strings.Split(v, ",") {
					if f = strings.TrimSpace(f); f != "" {
						c.ForwardFields = append(c.ForwardFields, f)
					}
				}
				return nil
			}},
		{"TOKENSVC_FORWARD_SECRET", "forward.secret", "", "secret the gateway sends as X-Gateway-Secret on /auth to get private fields as headers too; a wrong one is 401. Empty = /auth sends public fields only. At least 16 characters of A-Z a-z 0-9 - . _ ~ + / = (openssl rand -hex 32)",
			func(c *config, v string) error {
				if v != "" && len(v) < 16 {
					return errors.New("must be at least 16 characters")
				}
				// Characters that no gateway's config language treats
				// specially: nginx reads $ as a variable, Traefik's file
				// provider {{ as a template, YAML quotes and # as syntax.
				if strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") != "" {
					return errors.New("may hold only A-Z a-z 0-9 - . _ ~ + / = (hex or base64 from openssl rand)")
				}
				c.ForwardSecret = v
				return nil
			}},
		{"TOKENSVC_FORWARD_CACHE_TTL", "forward.cache_ttl", "off", "how long a gateway may cache a 200 of /auth for a token with neither a use limit nor an idle expiry (Cache-Control: private, max-age, never past the token's expiry; the nginx example caches on it): a token revoked meanwhile still passes that gateway until then. off = every answer no-store, each check reaches tokensvc",
			func(c *config, v string) error {
				if v == "off" {
					c.ForwardCacheTTL = 0
					return nil
				}
				d, err := parseDuration(v)
				if err != nil || d < time.Second {
					return errors.New("want off or a duration of at least 1s, such as 10s")
				}
				c.ForwardCacheTTL = d
				return nil
			}},
		{"TOKENSVC_GENERATE_RATE", "limits.generate", "off", "minting rate per partner key (N/s, N/m, N/h or off), unless the key sets rate_limit",
			func(c *config, v string) (err error) { c.GenerateRate, err = ratelimit.Parse(v); return err }},
		{"TOKENSVC_VERIFY_FAILURE_RATE", "limits.verify_failures", "100/m", "failed token checks allowed per client address before 429 (brute-force guard), or off",
			func(c *config, v string) (err error) { c.FailureRate, err = ratelimit.Parse(v); return err }},
		{"TOKENSVC_TRUSTED_PROXIES", "limits.trusted_proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client; empty = the peer address is the client",
			func(c *config, v string) error {
				c.TrustedProxies = nil
				for _, part := range strings.Split(v, ",") {
					if part = strings.TrimSpace(part); part == "" {
						continue
					}
					_, n, err := net.ParseCIDR(part)
					if err != nil {
						return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", part)
					}
					c.TrustedProxies = append(c.TrustedProxies, n)
				}
				return nil
			}},
		{"TOKENSVC_TLS_CERT", "tls.cert", "", "PEM certificate (chain) file: serve HTTPS; picked up again when the file changes",
			func(c *config, v string) error { c.TLSCert = v; return nil }},
		{"TOKENSVC_TLS_KEY", "tls.key", "", "PEM private key file for TOKENSVC_TLS_CERT",
			func(c *config, v string) error { c.TLSKey = v; return nil }},
		{"TOKENSVC_REDIS_CA", "redis.ca_file", "", "PEM CA file to verify a rediss:// server with, instead of the system roots",
			func(c *config, v string) error { c.RedisCA = v; return nil }},
		{"TOKENSVC_METRICS_ADDR", "metrics.addr", "", "where Prometheus metrics are served: empty = /metrics on TOKENSVC_ADDR; host:port = /metrics on a plain-HTTP listener of its own, not on TOKENSVC_ADDR; off = no metrics",
			func(c *config, v string) error {
				if v != "" && v != metricsOff {
					if _, _, err := net.SplitHostPort(v); err != nil {
						return errors.New("want empty, off, or host:port such as 127.0.0.1:9090")
					}
				}
				c.MetricsAddr = v
				return nil
			}},
		{"TOKENSVC_AUDIT", "audit.sink", auditOff, "where the audit trail (one JSON line per security event) goes: off; stdout (next to the access log, each line \"kind\":\"audit\"); redis (the Redis Stream <prefix>audit shared by every instance, read with tokensvc audit; needs TOKENSVC_REDIS_URL); or a file path (appended, mode 0600)",
			func(c *config, v string) error { c.Audit = v; return nonEmpty(v) }},
		{"TOKENSVC_AUDIT_REQUIRED", "audit.required", "false", "true: a request whose audit event cannot be recorded fails with 503 audit_unavailable; false: it is answered, and the failure counted (tokensvc_audit_write_failures_total) and logged",
			func(c *config, v string) (err error) { c.AuditRequired, err = parseBool(v); return err }},
		{"TOKENSVC_AUDIT_MAXLEN", "audit.max_len", strconv.Itoa(redisstore.DefaultAuditMaxLen), "about how many events the Redis audit stream keeps (XADD MAXLEN ~); older ones are trimmed",
			func(c *config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1000 {
					return errors.New("want a number of events, at least 1000")
				}
				c.AuditMaxLen = n
				return nil
			}},
		{"TOKENSVC_TOKEN_HISTORY", "token.history", "on", "on: each token keeps its recent events (mint, uses, refusals, revocation, refresh; the newest 32) as long as its record, shown to the minting partner by GET /tokens/{id}; off: tokens minted from now on keep none",
			func(c *config, v string) (err error) { c.TokenHistory, err = parseOnOff(v); return err }},
		{"TOKENSVC_LOG_LEVEL", "log.level", "info", "debug, info, warn or error",
			func(c *config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"TOKENSVC_SHUTDOWN_TIMEOUT", "server.shutdown_timeout", "15s", "how long in-flight requests may finish after SIGTERM",
			durationInto(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	}
}

// loadConfig reads the defaults, then the YAML file (if any), then the
// environment, which wins. Errors name the setting.
func loadConfig(getenv func(string) string, file string) (config, error) {
	var c config
	fromFile := map[string]string{}
	if file != "" {
		var err error
		if fromFile, err = readConfigFile(file); err != nil {
			return c, err
		}
	}
	for _, s := range settings() {
		v, from := s.def, "default"
		if fv, ok := fromFile[s.yaml]; ok {
			v, from = fv, file+": "+s.yaml
		}
		if ev := getenv(s.env); ev != "" {
			v, from = ev, s.env
		}
		if err := s.set(&c, strings.TrimSpace(v)); err != nil {
			return c, fmt.Errorf("configuration %s (from %s): %w", s.env, from, err)
		}
	}
	var err error
	if c.Tracing, err = tracingWanted(getenv); err != nil {
		return c, err
	}
	switch {
	case c.StoreTimeout <= 0:
		return c, errors.New("configuration TOKENSVC_STORE_TIMEOUT: must be positive")
	case c.TokenTTL < time.Second:
		return c, errors.New("configuration TOKENSVC_TOKEN_TTL: must be at least 1s")
	case c.MaxTokenTTL < c.TokenTTL:
		return c, errors.New("configuration TOKENSVC_MAX_TOKEN_TTL: must be at least TOKENSVC_TOKEN_TTL")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return c, errors.New("configuration TOKENSVC_TLS_CERT and TOKENSVC_TLS_KEY: set both or neither")
	case c.Audit == auditRedis && c.RedisURL == "":
		return c, errors.New("configuration TOKENSVC_AUDIT: redis needs TOKENSVC_REDIS_URL (the stream lives next to the tokens)")
	case c.AuditRequired && c.Audit == auditOff:
		return c, errors.New("configuration TOKENSVC_AUDIT_REQUIRED: true needs an audit trail (TOKENSVC_AUDIT)")
	case c.MaxTokenTTL > store.MaxTTL:
		return c, fmt.Errorf("configuration TOKENSVC_MAX_TOKEN_TTL: must be at most %s", store.MaxTTL)
	}
	return c, nil
}

// readConfigFile flattens the YAML file to dotted paths. Lists and maps are
// kept as YAML text, for settings (like api_keys) that take structure.
func readConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, s := range settings() {
		known[s.yaml] = true
	}
	out := map[string]string{}
	var walk func(prefix string, n *yaml.Node) error
	walk = func(prefix string, n *yaml.Node) error {
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			return walk(prefix, n.Content[0])
		}
		if known[prefix] {
			if n.Kind == yaml.ScalarNode {
				out[prefix] = n.Value
				return nil
			}
			b, err := yaml.Marshal(n)
			out[prefix] = string(b)
			return err
		}
		if n.Kind != yaml.MappingNode {
			if prefix == "" {
				return nil // an empty file
			}
			return fmt.Errorf("configuration file %s: unknown setting %q", path, prefix)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			if err := walk(key, n.Content[i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk("", &root)
}

// printSettings writes the settings table for -h.
func printSettings(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tYAML KEY\tDEFAULT\tMEANING")
	for _, s := range settings() {
		def := s.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.env, s.yaml, def, s.help)
	}
	tw.Flush()
}

// settingsMarkdown is the README's configuration table, made from
// settings() so the two cannot drift (TestREADMESettingsTable).
func settingsMarkdown() string {
	var b strings.Builder
	b.WriteString("| variable | YAML key | default | meaning |\n|---|---|---|---|\n")
	for _, s := range settings() {
		def := "`" + s.def + "`"
		if s.def == "" {
			def = "empty"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", s.env, s.yaml, def, strings.ReplaceAll(s.help, "|", "\\|"))
	}
	return b.String()
}

// durationText writes a default duration as one would type it: 1h, not
// 1h0m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parseDuration takes a Go duration ("90s", "1h") or whole seconds ("90").
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("want a duration such as 90s, 15m or 1h, or whole seconds")
	}
	return d, nil
}

func durationInto(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			return errors.New("must be positive")
		}
		*field(c) = d
		return nil
	}
}

// parseOnOff reads on or off (true or false).
func parseOnOff(v string) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, errors.New("want on or off")
}

// parseBool reads true or false.
func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("want true or false")
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}
