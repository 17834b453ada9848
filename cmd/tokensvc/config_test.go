package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/tokensvc/tokensvc/server"
	"github.com/tokensvc/tokensvc/server/keys"
	"github.com/tokensvc/tokensvc/server/ratelimit"
	"github.com/tokensvc/tokensvc/store/redisstore"
)

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(env{}.get, "")
	if err != nil {
		t.Fatal(err)
	}
	// The defaults that server, store and keys apply themselves come from
	// their constants: the settings table does not repeat them.
	want := config{Addr: ":8080", RedisPrefix: redisstore.DefaultPrefix, StoreTimeout: server.DefaultStoreTimeout, APIKeysReload: keys.DefaultReloadEvery,
		TokenTTL: server.DefaultTokenTTL, MaxTokenTTL: server.DefaultMaxTokenTTL, MaxBodyBytes: server.DefaultMaxBodyBytes, ShutdownTimeout: 15 * time.Second,
		MaxBatch: server.DefaultMaxBatch, MaxSession: server.DefaultMaxSession, IdempotencyKey: []byte{},
		FailureRate: ratelimit.Limit{N: 100, Per: time.Minute}, AutoPipeline: true,
		Audit: auditOff, AuditMaxLen: redisstore.DefaultAuditMaxLen, TokenHistory: true}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
}

// The file sets values, the environment overrides it, and structured
// values (a list of keys) reach their setting as YAML text.
func TestConfigFileThenEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokensvc.yaml")
	os.WriteFile(file, []byte(`
server:
  addr: ":9000"
  max_body_bytes: 2048
  api_keys:
    - id: partner-1
      server_secret: s1
token:
  ttl: 10m
  max_ttl: 7200
`), 0o600)
	c, err := loadConfig(env{"TOKENSVC_ADDR": "127.0.0.1:9100"}.get, file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9100" || c.MaxBodyBytes != 2048 || c.TokenTTL != 10*time.Minute || c.MaxTokenTTL != 2*time.Hour {
		t.Fatalf("config = %+v", c)
	}
	var keys []map[string]string
	if err := yaml.Unmarshal([]byte(c.APIKeys), &keys); err != nil || len(keys) != 1 || keys[0]["server_secret"] != "s1" {
		t.Fatalf("api_keys = %q (%v)", c.APIKeys, err)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		env  env
		file string
		want string
	}{
		{env{"TOKENSVC_TOKEN_TTL": "soon"}, "", "TOKENSVC_TOKEN_TTL"},
		{env{"TOKENSVC_TOKEN_TTL": "0"}, "", "TOKENSVC_TOKEN_TTL"},
		{env{"TOKENSVC_TOKEN_TTL": "500ms"}, "", "TOKENSVC_TOKEN_TTL"},
		{env{"TOKENSVC_TOKEN_TTL": "48h"}, "", "TOKENSVC_MAX_TOKEN_TTL"},
		{env{"TOKENSVC_MAX_BODY_BYTES": "lots"}, "", "TOKENSVC_MAX_BODY_BYTES"},
		{env{"TOKENSVC_LOG_LEVEL": "loud"}, "", "TOKENSVC_LOG_LEVEL"},
		{env{"TOKENSVC_API_KEYS_RELOAD_SEC": "0"}, "", "TOKENSVC_API_KEYS_RELOAD_SEC"},
		{env{"TOKENSVC_MAX_TOKEN_TTL": "800h"}, "", "TOKENSVC_MAX_TOKEN_TTL"},
		{env{"TOKENSVC_ADMIN_TOKEN": "short"}, "", "TOKENSVC_ADMIN_TOKEN"},
		{env{"TOKENSVC_IDEMPOTENCY_SECRET": "short"}, "", "TOKENSVC_IDEMPOTENCY_SECRET"},
		{env{"TOKENSVC_FORWARD_SECRET": "short"}, "", "TOKENSVC_FORWARD_SECRET"},
		{env{"TOKENSVC_FORWARD_SECRET": "has $dollar and spaces in it"}, "", "TOKENSVC_FORWARD_SECRET"},
		{env{"TOKENSVC_FORWARD_CACHE_TTL": "500ms"}, "", "TOKENSVC_FORWARD_CACHE_TTL"},
		{env{"TOKENSVC_FORWARD_CACHE_TTL": "soon"}, "", "TOKENSVC_FORWARD_CACHE_TTL"},
		{env{"TOKENSVC_MAX_BATCH": "0"}, "", "TOKENSVC_MAX_BATCH"},
		{env{"TOKENSVC_DURABILITY": "replica"}, "", "TOKENSVC_DURABILITY"},
		{env{"TOKENSVC_GENERATE_RATE": "fast"}, "", "TOKENSVC_GENERATE_RATE"},
		{env{"TOKENSVC_TRUSTED_PROXIES": "10.0.0.1"}, "", "TOKENSVC_TRUSTED_PROXIES"},
		{env{"TOKENSVC_TLS_CERT": "/x.pem"}, "", "TOKENSVC_TLS_KEY"},
		{env{"TOKENSVC_DURABILITY": "replica:0"}, "", "TOKENSVC_DURABILITY"},
		{env{"TOKENSVC_AUDIT": "redis"}, "", "TOKENSVC_AUDIT"},
		{env{"TOKENSVC_AUDIT_REQUIRED": "true"}, "", "TOKENSVC_AUDIT_REQUIRED"},
		{env{"TOKENSVC_AUDIT_REQUIRED": "yes"}, "", "TOKENSVC_AUDIT_REQUIRED"},
		{env{"TOKENSVC_AUDIT_MAXLEN": "10"}, "", "TOKENSVC_AUDIT_MAXLEN"},
		{env{"TOKENSVC_TOKEN_HISTORY": "sometimes"}, "", "TOKENSVC_TOKEN_HISTORY"},
		{env{}, "token:\n  ttl: forever\n", "token.ttl"},
		{env{}, "server:\n  adr: x\n", `unknown setting "server.adr"`},
		{env{}, "server: [", "configuration file"},
	}
	for _, tc := range cases {
		file := ""
		if tc.file != "" {
			file = filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(file, []byte(tc.file), 0o600)
		}
		_, err := loadConfig(tc.env.get, file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: err = %v, want it to name %s", tc.env, tc.file, err, tc.want)
		}
	}
}

// Defaults print as one would type them, and read back as themselves.
func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1h", 24 * time.Hour: "24h", time.Second: "1s", 15 * time.Second: "15s",
		90 * time.Second: "1m30s", 30 * time.Minute: "30m", 90 * time.Minute: "1h30m", 500 * time.Millisecond: "500ms"} {
		got := durationText(d)
		if got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
		if back, err := parseDuration(got); err != nil || back != d {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", got, back, err, d)
		}
	}
}
