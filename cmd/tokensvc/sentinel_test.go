package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokensvc/tokensvc/store/storetest"
)

// A Sentinel URL in go-redis's own dialect (what redis.ParseFailoverURL
// reads) runs the service end to end on real sentinels, without a word of
// warning; the spelling of earlier releases still works, with a warning
// from migrate and one from serve at start, naming what replaces it.
func TestSentinelURLs(t *testing.T) {
	t.Parallel()
	sn := storetest.StartSentinel(t)
	addrs := sn.SentinelAddrs()
	goRedis := "redis://" + addrs[0] + "/0?addr=" + strings.Join(addrs[1:], "&addr=") + "&master_name=" + sn.MasterName()
	if o, err := redis.ParseFailoverURL(goRedis); err != nil || o.MasterName != sn.MasterName() || len(o.SentinelAddrs) != 3 {
		t.Fatalf("go-redis reads %s as %+v, %v", goRedis, o, err)
	}
	old := "redis://" + addrs[0] + "/0?addr=" + strings.Join(addrs[1:], "&addr=") + "&sentinel_master=" + sn.MasterName()
	for _, tc := range []struct {
		name, url string
		warn      bool
	}{
		{"GoRedisDialect", goRedis, false},
		{"OldSpelling", old, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := freshPrefix()
			var out, errs bytes.Buffer
			e := env{"TOKENSVC_REDIS_URL": tc.url, "TOKENSVC_REDIS_PREFIX": prefix}
			if err := run(context.Background(), []string{"migrate"}, e.get, nil, &out, &errs, nil); err != nil {
				t.Fatalf("migrate: %v\n%s", err, errs.String())
			}
			if got := strings.Contains(errs.String(), "master_name=<name>"); got != tc.warn {
				t.Fatalf("migrate warned %v, want %v: %q", got, tc.warn, errs.String())
			}
			e["TOKENSVC_API_KEYS"] = "k"
			in := start(t, e)
			tok := in.mint(t, "k", "", `{"via":"sentinel"}`)
			if code, body := in.verifyCode(t, tok.Token.String()); code != 200 || body != `{"via":"sentinel"}` {
				t.Fatalf("verify: %d %s", code, body)
			}
			// The primary the sentinels name holds the record.
			primary := redis.NewClient(&redis.Options{Addr: sn.MasterAddr(t)})
			defer primary.Close()
			if n, err := primary.Exists(context.Background(), prefix+"layout").Result(); err != nil || n != 1 {
				t.Fatalf("the primary has no layout key under %q: %d, %v", prefix, n, err)
			}
			// serve warned at start, before it listened, once.
			logged := strings.Count(in.stdout.String(), `"deprecated":"sentinel_master=<name>","use":"master_name=<name>"`)
			if want := map[bool]int{true: 1, false: 0}[tc.warn]; logged != want {
				t.Fatalf("serve logged the deprecation %d times, want %d:\n%s", logged, want, in.stdout)
			}
		})
	}
}
