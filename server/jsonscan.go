package server

// compactObject validates body as exactly one JSON object within the shape
// limits and returns it compacted (insignificant white space removed, every
// value's text kept as written), in one pass with one allocation. Strings
// are measured as written (escapes count), which is never less than their
// decoded length. body must be valid UTF-8 (checked before).
func compactObject(body []byte) ([]byte, *Error) {
	s := jsonScan{in: body, out: make([]byte, 0, len(body))}
	s.space()
	if s.i >= len(s.in) || s.in[s.i] != '{' {
		return nil, invalidBody("the body must be a JSON object")
	}
	if !s.value() {
		return nil, s.fail()
	}
	s.space()
	if s.i != len(s.in) {
		return nil, invalidBody("the body has data after the JSON object")
	}
	return s.out, nil
}

type jsonScan struct {
	in      []byte
	i       int
	out     []byte
	depth   int
	members int
	err     *Error // a shape limit; nil means the syntax is wrong
}

func (s *jsonScan) fail() *Error {
	if s.err != nil {
		return s.err
	}
	return invalidBody("the body is not valid JSON")
}

func (s *jsonScan) space() {
	for s.i < len(s.in) {
		switch s.in[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScan) value() bool {
	s.space()
	if s.i >= len(s.in) {
		return false
	}
	switch c := s.in[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		return s.str(maxStringBytes, "a string value is longer than 8192 bytes")
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

// open enters a container, within the depth limit.
func (s *jsonScan) open() bool {
	if s.depth++; s.depth > maxDepth {
		s.err = invalidBody("the body nests deeper than 32 levels")
		return false
	}
	s.out = append(s.out, s.in[s.i])
	s.i++
	s.space()
	return true
}

// close leaves a container if its closing byte is next.
func (s *jsonScan) close(c byte) bool {
	if s.i < len(s.in) && s.in[s.i] == c {
		s.out = append(s.out, c)
		s.i++
		s.depth--
		return true
	}
	return false
}

func (s *jsonScan) object() bool {
	if !s.open() {
		return false
	}
	if s.close('}') {
		return true
	}
	for {
		s.space()
		if s.i >= len(s.in) || s.in[s.i] != '"' {
			return false
		}
		if s.members++; s.members > maxMembers {
			s.err = invalidBody("the body has more than 1024 fields")
			return false
		}
		if !s.str(maxNameBytes, "a field name is longer than 256 bytes") {
			return false
		}
		s.space()
		if s.i >= len(s.in) || s.in[s.i] != ':' {
			return false
		}
		s.out = append(s.out, ':')
		s.i++
		if !s.value() {
			return false
		}
		s.space()
		if s.close('}') {
			return true
		}
		if s.i >= len(s.in) || s.in[s.i] != ',' {
			return false
		}
		s.out = append(s.out, ',')
		s.i++
	}
}

func (s *jsonScan) array() bool {
	if !s.open() {
		return false
	}
	if s.close(']') {
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.space()
		if s.close(']') {
			return true
		}
		if s.i >= len(s.in) || s.in[s.i] != ',' {
			return false
		}
		s.out = append(s.out, ',')
		s.i++
	}
}

// str copies a string, checking its escapes, control characters and
// length as written.
func (s *jsonScan) str(limit int, tooLong string) bool {
	start := s.i
	s.i++ // the opening quote
	for s.i < len(s.in) {
		switch c := s.in[s.i]; {
		case c == '"':
			s.i++
			if s.i-start-2 > limit {
				s.err = invalidBody(tooLong)
				return false
			}
			s.out = append(s.out, s.in[start:s.i]...)
			return true
		case c == '\\':
			if s.i+1 >= len(s.in) {
				return false
			}
			switch s.in[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.in) {
					return false
				}
				for _, h := range s.in[s.i+2 : s.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			s.i++
		}
	}
	return false
}

func (s *jsonScan) literal(word string) bool {
	if len(s.in)-s.i < len(word) || string(s.in[s.i:s.i+len(word)]) != word {
		return false
	}
	s.out = append(s.out, word...)
	s.i += len(word)
	return true
}

// number copies a number of JSON's grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (s *jsonScan) number() bool {
	start := s.i
	digits := func() int {
		n := 0
		for s.i < len(s.in) && s.in[s.i] >= '0' && s.in[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.in[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.in) && s.in[s.i] == '0':
		s.i++
	case digits() == 0:
		return false
	}
	if s.i < len(s.in) && s.in[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.in) && (s.in[s.i] == 'e' || s.in[s.i] == 'E') {
		s.i++
		if s.i < len(s.in) && (s.in[s.i] == '+' || s.in[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	s.out = append(s.out, s.in[start:s.i]...)
	return true
}
