package keys

// snapshot is one immutable set of keys. Reloads build a new one and swap it
// in whole, so a lookup never sees half of an update.
type snapshot struct {
	keys       []entry
	byID       map[string]int         // index in keys
	secrets    map[[32]byte]secretRef // by SHA-256 of the clear secret
	cors       originIndex
	generation uint64
}

func newSnapshot(keys []entry, secrets map[[32]byte]secretRef, generation uint64) *snapshot {
	s := &snapshot{
		keys:       keys,
		byID:       make(map[string]int, len(keys)),
		secrets:    secrets,
		generation: generation,
	}
	for i := range keys {
		s.byID[keys[i].ID] = i
	}
	s.cors = newOriginIndex(keys)
	return s
}

// originIndex answers "does any enabled key allow this origin" without
// walking every key: exact hosts are a map, and only the distinct wildcard
// patterns are tried one by one.
type originIndex struct {
	all      bool                // some enabled key allows any origin
	exact    map[string][]string // host → ports ("" for any)
	wildcard []pattern
}

func newOriginIndex(keys []entry) originIndex {
	idx := originIndex{exact: map[string][]string{}}
	seen := map[pattern]bool{}
	for i := range keys {
		e := &keys[i]
		if e.Disabled {
			continue
		}
		if len(e.patterns) == 0 {
			idx.all = true
		}
		for _, p := range e.patterns {
			switch {
			case seen[p]:
			case p.kind == anyHost && p.port == "":
				idx.all = true
			case p.kind == exactHost:
				idx.exact[p.host] = append(idx.exact[p.host], p.port)
			default:
				idx.wildcard = append(idx.wildcard, p)
			}
			seen[p] = true
		}
	}
	return idx
}

func (idx *originIndex) allows(origin string) bool {
	if idx.all {
		return true
	}
	o := parseOrigin(origin)
	if !o.ok {
		return false
	}
	for _, port := range idx.exact[o.host] {
		if port == "" || port == o.port {
			return true
		}
	}
	for _, p := range idx.wildcard {
		if p.match(o) {
			return true
		}
	}
	return false
}
