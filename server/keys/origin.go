package keys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MatchOrigin reports whether the browser origin (the value of an Origin
// request header) is allowed by pattern. The rule is the table in the package
// documentation. A pattern that does not compile (see the package
// documentation) matches nothing.
func MatchOrigin(pattern, origin string) bool {
	p, err := compilePattern(pattern)
	if err != nil {
		return false
	}
	return p.match(parseOrigin(origin))
}

type patternKind uint8

const (
	anyHost   patternKind = iota // "*"
	exactHost                    // "efg.com"
	prefix                       // "abc*"
	suffix                       // "*abc.com", Jitsu's plain suffix
	subdomain                    // "*.yourdomain.com", at a label boundary
)

// pattern is a compiled origin pattern. The scheme is dropped when compiling:
// keys are about hosts, and an http page of a partner's host is the same
// partner as its https page.
type pattern struct {
	kind patternKind
	host string // lower case; the part without '*' for wildcard kinds
	port string // "" matches any port
}

// origin is a parsed Origin header; ok is false for "null" and anything
// unparsable, which only the bare "*" pattern matches.
type origin struct {
	host, port string
	ok         bool
}

func compilePattern(s string) (pattern, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	if s == "*" {
		return pattern{kind: anyHost}, nil
	}
	_, host, port, err := splitOrigin(s, true)
	if err != nil {
		return pattern{}, err
	}
	p := pattern{port: port}
	switch stars := strings.Count(host, "*"); {
	case host == "null":
		return pattern{}, errors.New(`"null" is not a host: only "*" matches the null origin`)
	case host == "*":
		p.kind = anyHost
	case stars == 0:
		p.kind, p.host = exactHost, host
	case stars > 1:
		return pattern{}, errors.New("'*' may appear once, at the start or the end of the host")
	case strings.HasPrefix(host, "*."):
		p.kind, p.host = subdomain, host[1:]
		if len(p.host) < 2 {
			return pattern{}, errors.New(`"*." needs a domain after it`)
		}
	case strings.HasPrefix(host, "*"):
		p.kind, p.host = suffix, host[1:]
	case strings.HasSuffix(host, "*"):
		p.kind, p.host = prefix, host[:len(host)-1]
	default:
		return pattern{}, errors.New("'*' may appear only at the start or the end of the host")
	}
	return p, nil
}

func parseOrigin(s string) origin {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	scheme, host, port, err := splitOrigin(s, false)
	if err != nil || host == "null" {
		return origin{}
	}
	if port == "" {
		// Browsers omit the scheme's default port; a pattern that names it
		// must still match.
		switch scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	return origin{host: host, port: port, ok: true}
}

func (p pattern) match(o origin) bool {
	if p.kind == anyHost && p.port == "" {
		return true
	}
	if !o.ok || (p.port != "" && p.port != o.port) {
		return false
	}
	switch p.kind {
	case anyHost:
		return true
	case exactHost:
		return o.host == p.host
	case prefix:
		return strings.HasPrefix(o.host, p.host)
	case suffix:
		return strings.HasSuffix(o.host, p.host)
	case subdomain:
		return len(o.host) > len(p.host) && strings.HasSuffix(o.host, p.host)
	}
	return false
}

// splitOrigin splits "[scheme://]host[:port]" into lower-case parts. The port
// comes back in canonical decimal form so "0443" and "443" compare equal.
// Patterns may hold '*' in the host; origins may not.
func splitOrigin(s string, wildcard bool) (scheme, host, port string, err error) {
	for i := 0; i < len(s); i++ {
		// Checked before lower-casing: strings.ToLower maps some non-ASCII
		// runes (the Kelvin sign) onto ASCII letters.
		if s[i] >= 0x80 || s[i] <= ' ' {
			return "", "", "", errors.New("only printable ASCII is allowed (use the punycode form of a host)")
		}
	}
	s = strings.ToLower(s)
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, s = s[:i], s[i+3:]
	}
	hostport := s
	if strings.HasPrefix(s, "[") { // IPv6 literal
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", "", errors.New("missing ']' in IPv6 address")
		}
		host, s = s[:end+1], s[end+1:]
		if s != "" && s[0] != ':' {
			return "", "", "", errors.New("unexpected text after ']'")
		}
		if s != "" {
			port = s[1:]
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	} else {
		host = s
	}
	if host == "" {
		return "", "", "", fmt.Errorf("no host in %q", hostport)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' ||
			(c == '*' && wildcard) || (host[0] == '[' && (c == '[' || c == ']' || c == ':' || c == '%'))
		if !ok {
			return "", "", "", fmt.Errorf("character %q is not allowed in a host", c)
		}
	}
	if port != "" || strings.HasSuffix(hostport, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return "", "", "", fmt.Errorf("bad port %q", port)
		}
		port = strconv.Itoa(n)
	}
	return scheme, host, port, nil
}
