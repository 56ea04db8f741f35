package opa

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Ambiguous reports why a request-target (the path as the client sent it, before any decoding,
// optionally followed by '?' and a query) has a path that routers read differently, or "" when
// it has not. keyauthz refuses such a path (403 "ambiguous path") before any route is looked up:
// the policy judges one reading of the path, and a gateway's backend must not be able to run
// another (docs/security.md, "Judging what the backend will run").
//
// A path is ambiguous when:
//   - it holds '#', in the path or the query (a fragment is never sent; a backend may read it
//     as part of the path);
//   - it encodes a separator: "%2F" or "%5C", any case (one router splits there, another not);
//   - after the one decoding it still holds '%' (double encoding: a backend that decodes twice
//     sees another path), or '?' or '#';
//   - it holds ';' (matrix parameters: "/a;x/b", "..;/"), '\', a control character, NUL or any
//     white space (routers trim, split or reject these differently);
//   - a segment is "." or "..", written plainly or encoded (backends differ on whether and
//     when they resolve dot segments, and a router that does not binds ".." as a parameter), or
//     is empty other than a single trailing slash ("//" shifts segments for routers that do
//     not collapse it), or ends in '.' (Windows and some frameworks strip a trailing dot);
//   - after decoding it is not valid UTF-8 (overlong forms such as "%C0%AF" for '/'), or holds
//     a non-ASCII character whose NFKC form contains an ASCII character (the fullwidth solidus
//     U+FF0F is "/", U+2024 is ".", the Kelvin sign is "K"), or whose upper case, lower case or
//     case folding is ASCII (the dotless ı upper-cases to "I", ſ folds to "s"): a backend that
//     normalises Unicode or compares paths case-insensitively reads another path;
//   - its query is one Go's parser skips part of (a ';', an invalid escape): other parsers
//     split on ';' or keep the pair, and read parameters the policy did not see.
//
// Only a path that every reader takes the same way gets to the policy, whose literal segments
// then match case-insensitively (the stricter reading of a case-insensitive backend).
func Ambiguous(target string) string {
	if target == "" || target[0] != '/' {
		return "not an absolute path"
	}
	if strings.IndexByte(target, '#') >= 0 {
		return "holds '#'"
	}
	raw, rawQuery, _ := strings.Cut(target, "?")
	// A query that Go's parser skips part of (a ';', an invalid escape, too many pairs) is one
	// that other parsers read differently: Crystal's and older Rack's split on ';' and keep a
	// pair Go drops, so "?channel=/admin/x;z&channel=/guest/ok" would be judged on the guest
	// channel alone while the backend publishes to the first.
	if rawQuery != "" {
		if _, err := url.ParseQuery(rawQuery); err != nil {
			return "a query that parsers read differently"
		}
	}
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' && (raw[i+1] == '2' && (raw[i+2] == 'f' || raw[i+2] == 'F') ||
			raw[i+1] == '5' && (raw[i+2] == 'c' || raw[i+2] == 'C')) {
			return "encodes a separator"
		}
	}
	decoded := decodeOnce(raw)
	ascii := true
	for i := 0; i < len(decoded); i++ {
		switch c := decoded[i]; {
		case c == '%':
			return "holds '%' after decoding"
		case c == '?' || c == '#' || c == ';' || c == '\\':
			return "holds " + quoteByte(c)
		case c <= ' ' || c == 0x7f:
			return "holds a control character or white space"
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii {
		if reason := ambiguousUnicode(decoded); reason != "" {
			return reason
		}
	}
	// Segments of the decoded path: "%2e%2e" is as much a dot segment as "..".
	segs := strings.Split(decoded[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "" && i == len(segs)-1:
			// A single trailing slash: every router we know treats it alike or redirects.
		case seg == "":
			return "holds an empty segment"
		case seg == "." || seg == "..":
			return "holds a dot segment"
		case seg[len(seg)-1] == '.':
			return "a segment ends in '.'"
		}
	}
	return ""
}

// ambiguousUnicode checks the non-ASCII part of a decoded path: valid UTF-8, no white space,
// and no character that NFKC turns into (or into something holding) ASCII.
func ambiguousUnicode(decoded string) string {
	if !utf8.ValidString(decoded) {
		return "not valid UTF-8"
	}
	for _, r := range decoded {
		if r < utf8.RuneSelf {
			continue
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return "holds a control character or white space"
		}
		if caseMapsToASCII(r) {
			return "holds a character whose case mapping is ASCII"
		}
		var buf [utf8.UTFMax]byte
		n := utf8.EncodeRune(buf[:], r)
		if form := norm.NFKC.Bytes(buf[:n]); hasASCII(form) {
			return "holds a character that Unicode normalisation turns into ASCII"
		}
	}
	return ""
}

// caseMapsToASCII reports whether r's upper case, lower case or any rune of its case-folding
// orbit is ASCII: a router that compares paths case-insensitively (strings.EqualFold folds ſ
// to s and K to k) reads it as that ASCII letter.
func caseMapsToASCII(r rune) bool {
	if unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToLower(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	return false
}

func hasASCII(b []byte) bool {
	for _, c := range b {
		if c < utf8.RuneSelf {
			return true
		}
	}
	return false
}

func quoteByte(c byte) string { return "'" + string(rune(c)) + "'" }
