package server

import (
	"cmp"
	"errors"
	"slices"
)

// Bundles are made smaller before they are sealed (seal.go, sealV3), for
// Redis memory: each occurrence of a string of bundleDict becomes one
// byte, its code. Codes are the bytes 0x01 to 0x1f, which a compact JSON
// object never holds (control characters must be escaped in JSON strings,
// and compaction removed the whitespace between tokens); a bundle that
// holds one anyway is sealed as it is (sealV2).
//
// The strings are the editor bundle's fields (README: auth, userId,
// server, file) with the JSON around them, the shapes of their usual
// values, and JSON's own punctuation and literals. A 150-byte editor
// bundle comes out about 60 bytes shorter; one of other fields gains on
// the punctuation only. Nothing is learnt across bundles: each is coded
// alone, so the sealed length says only which of these public strings a
// bundle holds, and how long the rest is, as the length of the bundle
// itself did.
//
// The list is part of the stored format: codes are never changed or
// reused. Another list would be another seal version.
var bundleDict = [...]string{
	`{"userId":"`, `","userId":"`, `{"server":"`, `","server":"`,
	`{"auth":"`, `","auth":"`, `{"file":"`, `","file":"`,
	`"userId":`, `"server":`, `"auth":`, `"file":`,
	`apiKey`, `/drawings/`, `.dwg`, `"}`,
	`":"`, `","`, `":`, `,"`, `{"`,
	`true`, `false`, `null`, `https://`,
	`"name":"`, `"email":"`, `"role":"`, `"user":"`, `"id":"`, `"path":"`,
}

// dictByFirst lists the codes of bundleDict by their string's first byte,
// longest string first: the encoder takes the longest match.
var dictByFirst = func() (by [256][]byte) {
	for i, s := range bundleDict {
		by[s[0]] = append(by[s[0]], byte(i+1))
	}
	for _, codes := range by {
		slices.SortStableFunc(codes, func(a, b byte) int { return cmp.Compare(len(bundleDict[b-1]), len(bundleDict[a-1])) })
	}
	return by
}()

var errDictCode = errors.New("server: a coded bundle holds an unknown code")

// dictEncode appends the coded form of plain to dst; ok is false when
// plain holds a byte that is a code (then nothing is coded).
func dictEncode(dst, plain []byte) ([]byte, bool) {
	for _, c := range plain {
		if c < 0x20 {
			return dst, false
		}
	}
next:
	for i := 0; i < len(plain); {
		for _, code := range dictByFirst[plain[i]] {
			if s := bundleDict[code-1]; len(plain)-i >= len(s) && string(plain[i:i+len(s)]) == s {
				dst = append(dst, code)
				i += len(s)
				continue next
			}
		}
		dst = append(dst, plain[i])
		i++
	}
	return dst, true
}

// dictDecode returns the bundle coded in coded.
func dictDecode(coded []byte) ([]byte, error) {
	n := len(coded)
	for _, c := range coded {
		if c < 0x20 && c != 0 && int(c) <= len(bundleDict) {
			n += len(bundleDict[c-1]) - 1
		}
	}
	dst := make([]byte, 0, n)
	for _, c := range coded {
		switch {
		case c >= 0x20:
			dst = append(dst, c)
		case c == 0 || int(c) > len(bundleDict):
			return nil, errDictCode
		default:
			dst = append(dst, bundleDict[c-1]...)
		}
	}
	return dst, nil
}
