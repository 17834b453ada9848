package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newRedisClient builds a client from one URL. One node, Sentinel and
// Cluster are chosen by the URL, not by code elsewhere:
//
//	redis://[user:pass@]host:6379[/db]                     one node
//	redis://host1:6379?addr=host2:6379&addr=host3:6379&cluster=true   Cluster (seed nodes)
//	redis://[user:pass@]s1:26379/0?addr=s2:26379&sentinel_master=mymaster[&sentinel_password=…]   Sentinel
//
// rediss:// turns on TLS. timeout bounds dialing, each read and write, and
// waiting for a pooled connection. Commands are never retried by the
// client: a use-counting script whose reply was lost must not run twice;
// the caller gets a 503 and retries knowingly.
func newRedisClient(raw string, timeout time.Duration, caFile string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL") // err would echo a password
	}
	var tlsConfig *tls.Config
	switch u.Scheme {
	case "redis":
	case "rediss":
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if caFile != "" {
			if tlsConfig.RootCAs, err = caPool(caFile); err != nil {
				return nil, fmt.Errorf("TOKENSVC_REDIS_CA: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("scheme %q: want redis:// or rediss://", u.Scheme)
	}
	if caFile != "" && tlsConfig == nil {
		return nil, errors.New("TOKENSVC_REDIS_CA needs a rediss:// URL")
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	q := u.Query()
	addrs := append([]string{u.Host}, q["addr"]...)
	for i, a := range addrs {
		if !strings.Contains(a, ":") {
			addrs[i] = a + ":6379"
		}
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("database %q is not a number", p)
		}
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	for k := range q {
		switch k {
		case "addr", "cluster", "sentinel_master", "sentinel_password":
		default:
			return nil, fmt.Errorf("unknown option %q", k)
		}
	}
	master, cluster := q.Get("sentinel_master"), q.Get("cluster") == "true"
	switch {
	case master != "" && cluster:
		return nil, errors.New("cluster=true and sentinel_master exclude each other")
	case master != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: master, SentinelAddrs: addrs, SentinelPassword: q.Get("sentinel_password"),
			Username: user, Password: pass, DB: db, TLSConfig: tlsConfig,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, MaxRetries: -1,
		}), nil
	case cluster:
		if db != 0 {
			return nil, errors.New("a Cluster has only database 0")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: addrs, Username: user, Password: pass, TLSConfig: tlsConfig,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, MaxRetries: -1,
		}), nil
	case len(addrs) > 1:
		return nil, errors.New("several addresses need cluster=true or sentinel_master=<name>")
	}
	return redis.NewClient(&redis.Options{
		Addr: addrs[0], Username: user, Password: pass, DB: db, TLSConfig: tlsConfig,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
		ContextTimeoutEnabled: true, MaxRetries: -1,
	}), nil
}
