package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisOptions are a TOKENSVC_REDIS_URL as go-redis parsed it: exactly one
// of the three is set.
type redisOptions struct {
	node     *redis.Options         // redis.ParseURL
	sentinel *redis.FailoverOptions // redis.ParseFailoverURL
	cluster  *redis.ClusterOptions  // redis.ParseClusterURL
}

// deprecation is a spelling of an earlier tokensvc release that is still
// read, for one release, and what replaces it.
type deprecation struct{ old, use string }

func (deprecation) message() string {
	return "TOKENSVC_REDIS_URL uses a spelling of earlier tokensvc releases, read for this release only"
}

// parseRedisURL reads raw with go-redis's own parsers, in their dialect,
// so an operator's go-redis URL works as it is. The topology is chosen as
// redis.NewUniversalClient chooses it: master_name=<name> is Sentinel
// (ParseFailoverURL: the URL's host and every addr= are sentinels, its
// user info authenticates to them, username= and password= to the data
// nodes); otherwise two or more addresses (the host and addr=) are Cluster
// seeds (ParseClusterURL); otherwise one node (ParseURL).
//
// The spellings of earlier tokensvc releases are rewritten to go-redis's
// before parsing, and each is returned as a deprecation to warn about.
// Errors never hold a password.
func parseRedisURL(raw string) (redisOptions, []deprecation, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return redisOptions{}, nil, errors.New("not a URL") // err would echo a password
	}
	secrets := secretsOf(u)
	q := u.Query()
	deps, cluster, err := rewriteOldSpellings(u, q)
	if err != nil {
		return redisOptions{}, nil, err
	}
	u.RawQuery = q.Encode()
	var o redisOptions
	switch {
	case q.Has("master_name"):
		o.sentinel, err = redis.ParseFailoverURL(u.String())
		if err == nil && (o.sentinel.RouteByLatency || o.sentinel.RouteRandomly || o.sentinel.ReplicaOnly) {
			err = errors.New("route_by_latency, route_randomly and replica_only send commands to replicas; tokensvc writes on every request")
		}
	case cluster || q.Has("addr"):
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return redisOptions{}, nil, errors.New("a Cluster has only database 0")
		}
		o.cluster, err = redis.ParseClusterURL(u.String())
	default:
		o.node, err = redis.ParseURL(u.String())
	}
	if err != nil {
		return redisOptions{}, nil, redact(err, secrets)
	}
	return o, deps, nil
}

// rewriteOldSpellings turns the query dialect of earlier tokensvc releases
// into go-redis's, in place, and says what it rewrote. cluster reports the
// old cluster=true, which also made a Cluster of a single seed.
func rewriteOldSpellings(u *url.URL, q url.Values) (deps []deprecation, cluster bool, err error) {
	if q.Has("cluster") && q.Has("sentinel_master") {
		return nil, false, errors.New("cluster=true and sentinel_master exclude each other")
	}
	if q.Has("cluster") {
		cluster = q.Get("cluster") == "true"
		q.Del("cluster")
		deps = append(deps, deprecation{"cluster=true", "two or more seed addresses (the host and addr=host:port), which go-redis takes for a Cluster"})
	}
	if q.Has("sentinel_master") {
		q.Set("master_name", q.Get("sentinel_master"))
		q.Del("sentinel_master")
		deps = append(deps, deprecation{"sentinel_master=<name>", "master_name=<name>"})
		// The old dialect's user info was the data nodes'; go-redis's is
		// the sentinels', the data nodes' being username= and password=.
		if u.User != nil {
			if user := u.User.Username(); user != "" {
				q.Set("username", user)
			}
			if pass, ok := u.User.Password(); ok {
				q.Set("password", pass)
			}
			u.User = nil
			deps = append(deps, deprecation{"user:password@ with sentinel_master (the data nodes' credentials)", "username= and password= (go-redis reads the user info of a Sentinel URL as the sentinels' credentials)"})
		}
		if q.Has("sentinel_password") {
			u.User = url.UserPassword("", q.Get("sentinel_password"))
			q.Del("sentinel_password")
			deps = append(deps, deprecation{"sentinel_password=<password>", ":<password>@ in the URL's user info"})
		}
	}
	if q.Has("sentinel_password") {
		return nil, false, errors.New("sentinel_password needs sentinel_master; with go-redis's master_name, the sentinels' password is the URL's user info")
	}
	portless := false
	for i, a := range q["addr"] {
		if a != "" && !strings.Contains(a, ":") {
			q["addr"][i], portless = net.JoinHostPort(a, "6379"), true
		}
	}
	if portless {
		deps = append(deps, deprecation{"addr=<host> without a port", "addr=<host>:6379"})
	}
	return deps, cluster, nil
}

// secretsOf lists the passwords a URL carries, to keep them out of errors.
func secretsOf(u *url.URL) []string {
	var s []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s = append(s, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	for _, k := range []string{"password", "sentinel_password"} {
		for _, p := range u.Query()[k] {
			if p != "" {
				s = append(s, p, url.QueryEscape(p))
			}
		}
	}
	return s
}

// redact removes the secrets from a parser's error.
func redact(err error, secrets []string) error {
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return errors.New(msg)
}

// newRedisClient builds a client from one URL (see parseRedisURL) and
// returns the deprecated spellings it read, for the caller to warn about.
// rediss:// turns on TLS, verified with the CA in caFile if set. timeout
// bounds dialing, each read and write, and waiting for a pooled
// connection, unless the URL sets go-redis's own dial_timeout,
// read_timeout, write_timeout or pool_timeout. Commands are never retried
// by the client: a use-counting script whose reply was lost must not run
// twice; the caller gets a 503 and retries knowingly. So max_retries is
// refused.
func newRedisClient(raw string, timeout time.Duration, caFile string) (redis.UniversalClient, []deprecation, error) {
	o, deps, err := parseRedisURL(raw)
	if err != nil {
		return nil, nil, err
	}
	var k knobs
	switch {
	case o.sentinel != nil:
		s := o.sentinel
		k = knobs{&s.DialTimeout, &s.ReadTimeout, &s.WriteTimeout, &s.PoolTimeout, &s.MaxRetries, &s.ContextTimeoutEnabled, &s.TLSConfig}
	case o.cluster != nil:
		c := o.cluster
		k = knobs{&c.DialTimeout, &c.ReadTimeout, &c.WriteTimeout, &c.PoolTimeout, &c.MaxRetries, &c.ContextTimeoutEnabled, &c.TLSConfig}
	default:
		n := o.node
		k = knobs{&n.DialTimeout, &n.ReadTimeout, &n.WriteTimeout, &n.PoolTimeout, &n.MaxRetries, &n.ContextTimeoutEnabled, &n.TLSConfig}
	}
	if err := k.settle(timeout, caFile); err != nil {
		return nil, nil, err
	}
	switch {
	case o.sentinel != nil:
		return redis.NewFailoverClient(o.sentinel), deps, nil
	case o.cluster != nil:
		return redis.NewClusterClient(o.cluster), deps, nil
	}
	return redis.NewClient(o.node), deps, nil
}

// knobs are the client options tokensvc settles itself, whatever the
// topology.
type knobs struct {
	dial, read, write, pool *time.Duration
	retries                 *int
	contextTimeout          *bool
	tls                     **tls.Config
}

func (k knobs) settle(timeout time.Duration, caFile string) error {
	if *k.retries != 0 && *k.retries != -1 {
		return errors.New("max_retries: tokensvc never lets the client retry a command (a use-counting script whose reply was lost must not run twice)")
	}
	*k.retries = -1
	for _, d := range []*time.Duration{k.dial, k.read, k.write, k.pool} {
		if *d == 0 {
			*d = timeout
		}
	}
	*k.contextTimeout = true
	if *k.tls == nil {
		if caFile != "" {
			return errors.New("TOKENSVC_REDIS_CA needs a rediss:// URL")
		}
		return nil
	}
	(*k.tls).MinVersion = tls.VersionTLS12
	if caFile != "" {
		pool, err := caPool(caFile)
		if err != nil {
			return fmt.Errorf("TOKENSVC_REDIS_CA: %w", err)
		}
		(*k.tls).RootCAs = pool
	}
	return nil
}
