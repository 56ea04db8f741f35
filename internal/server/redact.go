package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/keyauthz/keyauthz/internal/authz"
)

// Redaction for logs (docs/security.md#files-memory-and-logs: the key never appears in a log).
// Two rules, applied to every URL, path or query a log line holds:
//   - by name: the value of every api-key parameter (any case, its name percent-encoded or
//     not, parameters separated by '&' or ';'), whatever it looks like;
//   - by shape, anywhere: a key (32 lower-case hex digits, '.', the secret), anything that
//     starts like one (32 hex digits and '.'), and the base64 encoding of one (standard or
//     URL alphabet, padded or not), also once or twice percent-encoded. PlaceOS's upload route
//     carries a key in the path (/uploads/:id/download/:api_key/...), some clients
//     base64-encode it, and a key pasted into the wrong parameter is still a key.

// redacted replaces what is hidden.
const redacted = "REDACTED"

// RedactQuery returns a raw query with the value of every api-key parameter, and every value
// holding a key, replaced by REDACTED, for logs.
func RedactQuery(raw string) string {
	if raw == "" {
		return raw
	}
	var b strings.Builder
	changed := false
	for rest := raw; ; {
		i := strings.IndexAny(rest, "&;")
		part := rest
		if i >= 0 {
			part = rest[:i]
		}
		name, value, hasValue := strings.Cut(part, "=")
		switch {
		case isKeyParam(name):
			part, changed = name+"="+redacted, true
		case containsKey(name):
			part, changed = redacted, true
		case hasValue && containsKey(value):
			part, changed = name+"="+redacted, true
		}
		b.WriteString(part)
		if i < 0 {
			break
		}
		b.WriteByte(rest[i])
		rest = rest[i+1:]
	}
	if !changed {
		return raw
	}
	return b.String()
}

// isKeyParam reports whether a raw parameter name is api-key once decoded (once or more: the
// log must not depend on how many times a proxy decodes).
func isKeyParam(name string) bool {
	for range 3 {
		if strings.EqualFold(strings.TrimSpace(name), authz.KeyParam) {
			return true
		}
		n, err := url.QueryUnescape(name)
		if err != nil || n == name {
			return false
		}
		name = n
	}
	return strings.EqualFold(strings.TrimSpace(name), authz.KeyParam)
}

// RedactPath returns a URL path (raw or decoded) with every segment that holds a key replaced
// by REDACTED, and any key or encoded key that spans segments (standard base64 holds '/')
// replaced too, for logs.
func RedactPath(p string) string {
	if len(p) < hexIDLen+1 {
		return p
	}
	segs := strings.Split(p, "/")
	changed := false
	for i, s := range segs {
		if containsKey(s) {
			segs[i], changed = redacted, true
		}
	}
	if changed {
		p = strings.Join(segs, "/")
	}
	return RedactKeys(p)
}

// RedactKeys returns s with every key, or base64 encoding of one, replaced by REDACTED. When
// a key shows only once s is percent-decoded (once or twice), the decoded s is returned,
// redacted: a log line loses its exact encoding rather than keep a key.
func RedactKeys(s string) string {
	if len(s) < hexIDLen+1 {
		return s
	}
	if r, ok := redactSpans(s); ok {
		return r
	}
	for level := s; strings.IndexByte(level, '%') >= 0; {
		d, err := url.PathUnescape(level)
		if err != nil || d == level {
			break
		}
		if r, ok := redactSpans(d); ok {
			return r
		}
		level = d
	}
	return s
}

// containsKey reports whether s, or s percent-decoded once or twice (as a path or as a query
// value, where '+' is a space), holds a key or an encoding of one.
func containsKey(s string) bool {
	if len(s) < hexIDLen+1 {
		return false
	}
	if _, ok := redactSpans(s); ok {
		return true
	}
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return false
	}
	for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
		level := s
		for range 2 {
			d, err := unescape(level)
			if err != nil || d == level {
				break
			}
			if _, ok := redactSpans(d); ok {
				return true
			}
			level = d
		}
	}
	return false
}

const (
	hexIDLen = 32
	// b64Prefix is the base64 of the first 33 bytes of a key (the id and its '.'): 11 groups.
	b64Prefix = 44
	// b64KeyLen is the unpadded base64 length of a whole key (76 bytes); padded it has "==".
	b64KeyLen = 102
)

// redactSpans replaces each key (or base64 of one) in s with REDACTED. A candidate starts at
// the beginning of s or after a character that is not a letter or a digit.
func redactSpans(s string) (string, bool) {
	var b strings.Builder
	last, found := 0, false
	for i := 0; i+hexIDLen < len(s); i++ {
		if i > 0 && isAlnum(s[i-1]) {
			continue
		}
		n := keyAt(s, i)
		if n == 0 {
			continue
		}
		if !found {
			b.Grow(len(s))
			found = true
		}
		b.WriteString(s[last:i])
		b.WriteString(redacted)
		i += n - 1
		last = i + 1
	}
	if !found {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// keyAt returns the length of the key, or base64 encoding of a key, that starts at s[i], or 0.
func keyAt(s string, i int) int {
	t := s[i:]
	if len(t) > hexIDLen && isHex(t[:hexIDLen]) && t[hexIDLen] == '.' {
		n := hexIDLen + 1
		for n < len(t) && isB64URL(t[n]) {
			n++
		}
		return n
	}
	if len(t) < b64Prefix {
		return 0
	}
	var id [33]byte
	if !decodeB64(t[:b64Prefix], id[:]) || !isHex(string(id[:hexIDLen])) || id[hexIDLen] != '.' {
		return 0
	}
	n := b64Prefix
	for n < len(t) && n < b64KeyLen && b64val(t[n]) >= 0 {
		n++
	}
	for k := 0; k < 2 && n < len(t) && t[n] == '='; k++ {
		n++
	}
	return n
}

// decodeB64 decodes src (a multiple of 4 characters of either base64 alphabet, no padding)
// into dst (3 bytes per 4 characters).
func decodeB64(src string, dst []byte) bool {
	for g := 0; g+4 <= len(src); g += 4 {
		var v uint32
		for j := range 4 {
			c := b64val(src[g+j])
			if c < 0 {
				return false
			}
			v = v<<6 | uint32(c)
		}
		o := g / 4 * 3
		dst[o], dst[o+1], dst[o+2] = byte(v>>16), byte(v>>8), byte(v)
	}
	return true
}

// b64val is the value of a base64 character in the standard or the URL alphabet, or -1.
func b64val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	}
	return -1
}

func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// NewRedactingHandler wraps h so that no log record it writes holds a key: the message and
// every string, error or other value of a record (groups included) are passed through
// RedactKeys. It is the net under the call sites, which redact what they log themselves
// (RedactPath, RedactQuery): an error that quotes a URL, a panic value, a path logged by code
// that forgot.
func NewRedactingHandler(h slog.Handler) slog.Handler { return redactingHandler{h} }

type redactingHandler struct{ h slog.Handler }

func (r redactingHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, RedactKeys(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactingHandler{r.h.WithAttrs(red)}
}

func (r redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{r.h.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); RedactKeys(s) != s {
			return slog.String(a.Key, RedactKeys(s))
		}
	case slog.KindGroup:
		as := v.Group()
		red := make([]slog.Attr, len(as))
		for i, g := range as {
			red[i] = redactAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindAny:
		// An error, a Stringer or any other value: judged by its printed form, which replaces
		// it only when it holds a key.
		if s := fmt.Sprint(v.Any()); RedactKeys(s) != s {
			return slog.String(a.Key, RedactKeys(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
