package keys

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokensvc/tokensvc/server/ratelimit"
)

// rawKey is one key object as written at the source, before secrets are
// hashed and checked against the other keys.
type rawKey struct {
	label         string // "key #3" or `key "acme"`, for error messages
	id            string
	serverSecrets []string
	clientSecrets []string
	origins       []string
	maxTTL        time.Duration
	defaultTTL    time.Duration
	disabled      bool
	rateLimit     ratelimit.Limit
	plain         bool // a plain string: server and client secret, any origin
}

// parseInline parses the spec given inline (environment or config file):
// a YAML or JSON document, or a plain string, or a comma-separated list of
// plain strings.
func parseInline(spec string) ([]rawKey, error) {
	s := strings.TrimSpace(spec)
	if !looksStructured(s) {
		var keys []rawKey
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				keys = append(keys, plainKey(len(keys)+1, part))
			}
		}
		return keys, nil
	}
	return parseDocument([]byte(s))
}

// looksStructured tells a YAML or JSON document from a plain secret. Plain
// secrets are not fed to the YAML parser because ordinary secret characters
// ('*', '&', '!', '%', '@') have a meaning there.
func looksStructured(s string) bool {
	return strings.ContainsAny(s, "\n\r") || strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{") ||
		strings.HasPrefix(s, "- ") || strings.HasPrefix(s, "-\t") || strings.HasPrefix(s, "tokens:")
}

func plainKey(n int, secret string) rawKey {
	return rawKey{label: fmt.Sprintf("key #%d", n), serverSecrets: []string{secret}, clientSecrets: []string{secret}, plain: true}
}

// parseDocument parses a YAML (hence also JSON) list of key objects, or an
// object {"tokens": [...]}, which is Jitsu's file and HTTP payload.
func parseDocument(data []byte) ([]rawKey, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, redactYAML(err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("empty document")
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.MappingNode {
		var tokens *yaml.Node
		for i := 0; i+1 < len(root.Content); i += 2 {
			if name := root.Content[i].Value; name != "tokens" {
				return nil, fmt.Errorf("line %d: unknown top-level field %s, want tokens", root.Content[i].Line, fieldName(name))
			}
			tokens = resolve(root.Content[i+1])
		}
		if tokens == nil || isNull(tokens) {
			return nil, errors.New(`no "tokens" list`)
		}
		root = tokens
	}
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: want a list of keys or an object {tokens: [...]}", root.Line)
	}
	keys := make([]rawKey, 0, len(root.Content))
	for i, item := range root.Content {
		item = resolve(item)
		switch {
		case item.Kind == yaml.ScalarNode && !isNull(item):
			// A list of plain strings is accepted like a comma list.
			keys = append(keys, plainKey(i+1, item.Value))
		case item.Kind == yaml.MappingNode:
			k, err := parseKeyNode(i+1, item)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("key #%d (line %d): want an object", i+1, item.Line)
		}
	}
	return keys, nil
}

func parseKeyNode(n int, m *yaml.Node) (rawKey, error) {
	k := rawKey{label: fmt.Sprintf("key #%d", n)}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if name := m.Content[i].Value; name == "id" {
			k.id = strings.TrimSpace(resolve(m.Content[i+1]).Value)
			if k.id != "" {
				k.label = fmt.Sprintf("key %q", k.id)
			}
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		name, v := m.Content[i].Value, resolve(m.Content[i+1])
		if seen[name] {
			return rawKey{}, fmt.Errorf("%s: field %s given twice", k.label, fieldName(name))
		}
		seen[name] = true
		var err error
		switch name {
		case "id":
			if v.Kind != yaml.ScalarNode {
				err = errors.New("want a string")
			} else if len(k.id) > 128 || strings.ContainsFunc(k.id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				err = errors.New("ids are at most 128 characters, without spaces or control characters")
			}
		case "server_secret":
			k.serverSecrets, err = stringList(v)
		case "client_secret":
			k.clientSecrets, err = stringList(v)
		case "origins":
			k.origins, err = stringList(v)
		case "max_ttl":
			k.maxTTL, err = duration(v)
		case "default_ttl":
			k.defaultTTL, err = duration(v)
		case "rate_limit":
			k.rateLimit, err = ratelimit.Parse(v.Value)
		case "disabled":
			if k.disabled, err = strconv.ParseBool(v.Value); err != nil {
				err = errors.New("want true or false")
			}
		default:
			return rawKey{}, fmt.Errorf("%s (line %d): unknown field %s", k.label, m.Content[i].Line, fieldName(name))
		}
		if err != nil {
			return rawKey{}, fmt.Errorf("%s (line %d): %s: %w", k.label, v.Line, name, err)
		}
	}
	return k, nil
}

// stringList accepts a scalar or a list of scalars; empty strings are
// dropped. Its errors never quote the value, which may be a secret.
func stringList(v *yaml.Node) ([]string, error) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	var out []string
	for _, it := range items {
		it = resolve(it)
		if it.Kind != yaml.ScalarNode {
			return nil, errors.New("want a string or a list of strings")
		}
		if s := strings.TrimSpace(it.Value); s != "" && !isNull(it) {
			out = append(out, s)
		}
	}
	return out, nil
}

// duration accepts a Go duration string ("30m", "1h30m") or whole seconds.
func duration(v *yaml.Node) (time.Duration, error) {
	if isNull(v) {
		return 0, nil
	}
	s := strings.TrimSpace(v.Value)
	d, err := time.ParseDuration(s)
	if err != nil {
		sec, serr := strconv.ParseInt(s, 10, 32)
		if serr != nil || v.Kind != yaml.ScalarNode {
			return 0, errors.New(`want a duration like "30m" or whole seconds`)
		}
		d = time.Duration(sec) * time.Second
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

var fieldLike = regexp.MustCompile(`^[A-Za-z_]{1,32}$`)

// fieldName quotes a field name for an error message unless it could be a
// secret pasted in the wrong place.
func fieldName(name string) string {
	if fieldLike.MatchString(name) {
		return strconv.Quote(name)
	}
	return "(name not shown)"
}

var quoted = regexp.MustCompile("'[^']{2,}'|`[^`]{2,}`|\"[^\"]{2,}\"")

// redactYAML removes quoted text from a YAML syntax error: the parser quotes
// anchor names and values, which may be secrets. Single characters, as in
// "did not find expected ',' or ']'", are kept.
func redactYAML(err error) error {
	return errors.New(quoted.ReplaceAllString(err.Error(), "'…'"))
}
