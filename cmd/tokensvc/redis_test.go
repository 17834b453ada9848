package main

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// parsed is what a test checks of a parsed TOKENSVC_REDIS_URL.
type parsed struct {
	Kind                   string // node, sentinel or cluster
	Addrs                  []string
	Master                 string
	DB                     int
	Username, Password     string
	SentinelUser, Sentinel string // the sentinels' credentials
	TLS                    bool
	PoolSize               int
	Deprecated             []string
}

func summarize(o redisOptions, deps []deprecation) parsed {
	var p parsed
	switch {
	case o.sentinel != nil:
		s := o.sentinel
		p = parsed{Kind: "sentinel", Addrs: s.SentinelAddrs, Master: s.MasterName, DB: s.DB, Username: s.Username, Password: s.Password,
			SentinelUser: s.SentinelUsername, Sentinel: s.SentinelPassword, TLS: s.TLSConfig != nil, PoolSize: s.PoolSize}
	case o.cluster != nil:
		c := o.cluster
		p = parsed{Kind: "cluster", Addrs: c.Addrs, Username: c.Username, Password: c.Password, TLS: c.TLSConfig != nil, PoolSize: c.PoolSize}
	default:
		n := o.node
		p = parsed{Kind: "node", Addrs: []string{n.Addr}, DB: n.DB, Username: n.Username, Password: n.Password, TLS: n.TLSConfig != nil, PoolSize: n.PoolSize}
	}
	for _, d := range deps {
		p.Deprecated = append(p.Deprecated, d.old)
	}
	return p
}

// go-redis's own dialect, as its parsers read it, and the spellings of
// earlier tokensvc releases, still read with a deprecation.
func TestParseRedisURL(t *testing.T) {
	cases := []struct {
		name, url string
		want      parsed
	}{
		{"Node", "redis://localhost:6379/2", parsed{Kind: "node", Addrs: []string{"localhost:6379"}, DB: 2}},
		{"NodeTLSWithCredentials", "rediss://user:pw@cache.example:6380", parsed{Kind: "node", Addrs: []string{"cache.example:6380"}, Username: "user", Password: "pw", TLS: true}},
		{"NodeDefaults", "redis://", parsed{Kind: "node", Addrs: []string{"localhost:6379"}}},
		{"NodeGoRedisOptions", "redis://h:7000/0?pool_size=7&client_name=tokensvc&dial_timeout=3", parsed{Kind: "node", Addrs: []string{"h:7000"}, PoolSize: 7}},
		{"UnixSocket", "unix:///run/redis.sock?db=3", parsed{Kind: "node", Addrs: []string{"/run/redis.sock"}, DB: 3}},
		{"Cluster", "redis://user:pw@n1:7000?addr=n2:7001&addr=n3:7002", parsed{Kind: "cluster", Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Username: "user", Password: "pw"}},
		{"ClusterTLS", "rediss://n1:7000?addr=n2:7001", parsed{Kind: "cluster", Addrs: []string{"n1:7000", "n2:7001"}, TLS: true}},
		{"Sentinel", "redis://s1:26379/1?addr=s2:26379&addr=s3:26379&master_name=mymaster",
			parsed{Kind: "sentinel", Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, Master: "mymaster", DB: 1}},
		{"SentinelCredentials", "redis://suser:spw@s1:26379?master_name=mymaster&username=app&password=secret",
			parsed{Kind: "sentinel", Addrs: []string{"s1:26379"}, Master: "mymaster", Username: "app", Password: "secret", SentinelUser: "suser", Sentinel: "spw"}},
		{"SentinelOneAddress", "redis://s1?master_name=m", parsed{Kind: "sentinel", Addrs: []string{"s1:6379"}, Master: "m"}},

		{"OldCluster", "redis://n1:7000?addr=n2:7001&addr=n3:7002&cluster=true",
			parsed{Kind: "cluster", Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Deprecated: []string{"cluster=true"}}},
		{"OldClusterOneSeed", "redis://n1:7000?cluster=true", parsed{Kind: "cluster", Addrs: []string{"n1:7000"}, Deprecated: []string{"cluster=true"}}},
		{"OldSentinel", "redis://s1:26379/0?addr=s2:26379&sentinel_master=mymaster",
			parsed{Kind: "sentinel", Addrs: []string{"s1:26379", "s2:26379"}, Master: "mymaster", Deprecated: []string{"sentinel_master=<name>"}}},
		{"OldSentinelCredentials", "redis://user:pw@s1:26379/2?addr=s2:26379&sentinel_master=mymaster&sentinel_password=spw",
			parsed{Kind: "sentinel", Addrs: []string{"s1:26379", "s2:26379"}, Master: "mymaster", DB: 2, Username: "user", Password: "pw", Sentinel: "spw",
				Deprecated: []string{"sentinel_master=<name>", "user:password@ with sentinel_master (the data nodes' credentials)", "sentinel_password=<password>"}}},
		{"OldPortlessAddr", "redis://s1:26379?addr=s2&sentinel_master=m",
			parsed{Kind: "sentinel", Addrs: []string{"s1:26379", "s2:6379"}, Master: "m", Deprecated: []string{"sentinel_master=<name>", "addr=<host> without a port"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, deps, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(o, deps)); diff != "" {
				t.Fatalf("(-want +got)\n%s", diff)
			}
			// Without its old spellings, a URL is go-redis's own: its
			// parser reads it the same way on its own.
			if len(deps) > 0 {
				return
			}
			var err2 error
			switch {
			case o.sentinel != nil:
				_, err2 = redis.ParseFailoverURL(tc.url)
			case o.cluster != nil:
				_, err2 = redis.ParseClusterURL(tc.url)
			default:
				_, err2 = redis.ParseURL(tc.url)
			}
			if err2 != nil {
				t.Fatalf("go-redis refuses it: %v", err2)
			}
		})
	}
}

// Bad URLs are refused with an error that names the problem and never a
// password.
func TestRedisURLErrors(t *testing.T) {
	cases := []struct{ url, want string }{
		{"http://x", "scheme"},
		{"redis://h/x", "database"},
		{"redis://h?timeout=1", "unexpected option: timeout"},
		{"redis://h?addr=h2:1&db=x", "unexpected option: db"},
		{"redis://h?cluster=true&sentinel_master=m", "exclude each other"},
		{"redis://h:1/3?cluster=true", "only database 0"},
		{"redis://h:1/3?addr=h2:2", "only database 0"},
		{"redis://:hunter2@h?sentinel_password=hunter2", "sentinel_password needs sentinel_master"},
		{"redis://s1?master_name=m&route_randomly=true", "replicas"},
		{"redis://s1?master_name=m&replica_only=true", "replicas"},
		{"redis://h?max_retries=3", "max_retries"},
		{"redis://user:hunter2@h:port/0", "not a URL"},
		{"redis://user:hunter2@h:6379/x", "database"},
		{"redis://s:hunter2@s1?master_name=m&password=hunter2&db=hunter2", "database"},
		{"redis://h?addr=h2:1&pool_size=hunter2&password=hunter2", "pool_size"},
	}
	for _, tc := range cases {
		c, _, err := newRedisClient(tc.url, time.Second, "")
		if err == nil {
			c.Close()
			t.Errorf("%s: accepted", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.url, err)
		}
	}
	if c, _, err := newRedisClient("redis://h", time.Second, "/ca.pem"); err == nil || !strings.Contains(err.Error(), "rediss://") {
		if c != nil {
			c.Close()
		}
		t.Errorf("a CA with redis:// = %v, want it refused", err)
	}
}

// Whatever the topology, the client never retries, is bounded by the
// store timeout unless the URL says otherwise, and speaks TLS 1.2 or later.
func TestRedisClientSettings(t *testing.T) {
	type got struct {
		Type string
		// NoRetries: MaxRetries, once the client normalized it, is 0 (a
		// Client's none) or -1 (a ClusterClient's none).
		NoRetries                     bool
		Dial, Read, Write, Pool       time.Duration
		ContextTimeout, TLS12, HasTLS bool
	}
	of := func(c redis.UniversalClient) got {
		var o *redis.Options
		switch c := c.(type) {
		case *redis.Client:
			o = c.Options()
		case *redis.ClusterClient:
			co := c.Options()
			o = &redis.Options{MaxRetries: co.MaxRetries, DialTimeout: co.DialTimeout, ReadTimeout: co.ReadTimeout, WriteTimeout: co.WriteTimeout,
				PoolTimeout: co.PoolTimeout, ContextTimeoutEnabled: co.ContextTimeoutEnabled, TLSConfig: co.TLSConfig}
		}
		return got{Type: typeName(c), NoRetries: o.MaxRetries <= 0, Dial: o.DialTimeout, Read: o.ReadTimeout, Write: o.WriteTimeout, Pool: o.PoolTimeout,
			ContextTimeout: o.ContextTimeoutEnabled, HasTLS: o.TLSConfig != nil, TLS12: o.TLSConfig != nil && o.TLSConfig.MinVersion == tls.VersionTLS12}
	}
	const d = 700 * time.Millisecond
	cases := []struct {
		url  string
		want got
	}{
		{"redis://h:6379", got{"*redis.Client", true, d, d, d, d, true, false, false}},
		{"rediss://n1:7000?addr=n2:7001", got{"*redis.ClusterClient", true, d, d, d, d, true, true, true}},
		{"rediss://s1:26379?master_name=m", got{"*redis.Client", true, d, d, d, d, true, true, true}},
		{"redis://h:6379?dial_timeout=5s&max_retries=-1", got{"*redis.Client", true, 5 * time.Second, d, d, d, true, false, false}},
	}
	for _, tc := range cases {
		c, _, err := newRedisClient(tc.url, d, "")
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if diff := cmp.Diff(tc.want, of(c)); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.url, diff)
		}
		c.Close()
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
