package opa

import (
	"net/url"
	"strings"
)

// SplitURI splits a request URI into its path and its query. The path is everything before the
// first '?' (a fragment, from the first '#', is dropped first). The query is parsed leniently,
// like url.ParseQuery, skipping malformed pairs; it is never nil.
func SplitURI(raw string) (path string, query map[string][]string) {
	path, rawQuery := splitTarget(raw)
	// ParseQuery keeps every well-formed pair and reports only the first bad one.
	q, _ := url.ParseQuery(rawQuery)
	if q == nil {
		q = url.Values{}
	}
	return path, q
}

// URIPath is the path SplitURI cuts from a request URI, without parsing the query: for a
// caller that routes by the path and must read it exactly as the policy's input does.
func URIPath(raw string) string {
	path, _ := splitTarget(raw)
	return path
}

// splitTarget drops a fragment (from the first '#') and cuts the rest at the first '?'.
func splitTarget(raw string) (path, rawQuery string) {
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	path, rawQuery, _ = strings.Cut(raw, "?")
	return path, rawQuery
}

// NormalizePath returns the canonical form of a request path, as the policy expects it:
// percent-decoded once (an invalid escape is kept literally), dot segments resolved, repeated
// slashes collapsed, no trailing slash except on "/", and always starting with "/".
//
// The result is idempotent (NormalizePath(NormalizePath(p)) == NormalizePath(p)) and never
// holds "//", "?", "#" or a "." or ".." segment: '?' and '#' are written as "%3F" and "%23",
// and a '%' that would otherwise read as an escape in a second pass is written as "%25"
// (so "/a%2525" stays "/a%2525").
func NormalizePath(p string) string {
	if isCanonical(p) {
		return p // the common case: nothing to decode, resolve or collapse, and no allocation
	}
	return normalize(p)
}

// normalize is NormalizePath without the fast path for canonical input.
func normalize(p string) string {
	decoded := decodeOnce(p)

	// Resolve dot segments and empty segments on the decoded path: "%2e%2e" is "..", and a
	// decoded "%2F" separates segments like any '/'.
	segs := make([]string, 0, strings.Count(decoded, "/")+1)
	for seg := range strings.SplitSeq(decoded, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "/"
	}

	var b strings.Builder
	b.Grow(len(decoded) + 8)
	for _, seg := range segs {
		b.WriteByte('/')
		for i := 0; i < len(seg); i++ {
			switch c := seg[i]; c {
			case '?':
				b.WriteString("%3F")
			case '#':
				b.WriteString("%23")
			case '%':
				if i+2 < len(seg) && isHex(seg[i+1]) && isHex(seg[i+2]) {
					b.WriteString("%25")
				} else {
					b.WriteByte('%')
				}
			default:
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// isCanonical reports whether p is already what NormalizePath would make of it: it starts with
// "/", holds no '%', '?' or '#', no empty segment ("//", or a trailing "/" other than on "/"),
// and no "." or ".." segment.
func isCanonical(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			switch p[i] {
			case '%', '?', '#':
				return false
			case '/':
			default:
				continue
			}
		}
		switch p[segStart:i] {
		case "", ".", "..":
			return false
		}
		segStart = i + 1
	}
	return true
}

// decodeOnce percent-decodes s once; an escape that is not '%' and two hex digits is kept.
func decodeOnce(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
