package opa

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAmbiguous(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target string
		want   bool
	}{
		// Plain spellings every router reads alike.
		{"/", false},
		{"/api/engine/v2/api_keys", false},
		{"/api/engine/v2/api_keys/", false},
		{"/api/engine/v2/API_KEYS", false}, // case is the policy's business: literals match in any case
		{"/api/engine/v2/systems/sys-1?x=%25", false},
		{"/api/engine/v2/systems/%73ys-1", false}, // an escaped letter decodes once, to a letter
		{"/metadata/caf%C3%A9", false},
		{"/metadata/café", false},
		{"/api/engine/v2/users/user-V3BpiKgIn8EHzF", false},
		{"/a/.b/c.d", false},
		// The 17 spellings of issue 9 that fell through to the catch-all route, and kin.
		{"/api/engine/v2/api_keys;x=1", true},
		{"/api/engine/v2/systems/..;/api_keys", true},
		{"/api/engine/v2/api_keys.", true},
		{"/api/engine/v2/api_keys%2e", true},
		{"/api/engine/v2/api_keys%00", true},
		{"/api/engine/v2/api_keys%20", true},
		{"/api/engine/v2/api_keys%09", true},
		{"/api/engine/v2\\api_keys", true},
		{"/api/engine/v2%5capi_keys", true},
		{"/api/engine/v2%5Capi_keys", true},
		{"/api/engine/v2%2fapi_keys", true},
		{"/api/engine/v2%2Fapi_keys", true},
		{"/api/engine/v2/%252e%252e/api_keys", true},
		{"/api/engine/v2/%2561pi_keys", true},
		{"/api/engine/v2/systems/../api_keys", true},
		{"/api/engine/v2/systems/%2e%2e/api_keys", true},
		{"/api/engine/v2/./api_keys", true},
		{"/api/engine/v2//api_keys", true},
		{"//api/engine/v2/api_keys", true},
		{"/api/engine/v2/systems#/../api_keys", true},
		{"/api/engine/v2/systems?x=1#/../../api_keys", true},
		{"/api/engine/v2/systems/a%3Fb", true},
		{"/api/engine/v2/systems/a%23b", true},
		{"/api/engine/v2\uff0fapi_keys", true},          // fullwidth solidus
		{"/api/engine/v2/%EF%BC%8Fapi_keys", true},      // the same, encoded
		{"/api/engine/v2/systems/\u2024\u2024/x", true}, // one-dot leaders
		{"/api/engine/v2/\uff41pi_keys", true},          // fullwidth a
		{"/api/engine/v2/api_\u212aeys", true},          // Kelvin sign
		{"/api/engine/v2/api_keys\u00a0", true},         // no-break space
		{"/api/engine/v2%c0%afapi_keys", true},          // overlong '/'
		{"/api/engine/v2/%ff", true},                    // invalid UTF-8
		{"/api/engine/v2/a%zz", true},                   // a '%' that is no escape stays a '%'
		{"/api/engine/v2/a%", true},
		{"/api/engine/v2/ap%C4%B1_keys", true}, // dotless ı, upper case I
		{"/api/engine/v2/api_İeys", true},      // İ, lower case i
		{"/api/engine/v2/ſystems", true},       // long s, folds to s
		{"/api/engine/v2/signal?channel=/admin/x;z&channel=/guest/ok", true},
		{"/api/engine/v2/signal?channel=/admin/x%zz&channel=/guest/ok", true},
		{"/api/engine/v2/signal?channel=%2Fguest%2Fok&channel=/guest/x", false},
		{"/api/engine/v2/systems?q=a+b&limit=10", false},
		{"api/engine/v2", true},
		{"*", true},
		{"", true},
	}
	for _, tc := range tests {
		if got := Ambiguous(tc.target) != ""; got != tc.want {
			t.Errorf("Ambiguous(%q) = %q, want ambiguous %v", tc.target, Ambiguous(tc.target), tc.want)
		}
	}
}

// FuzzAmbiguous checks what refusing ambiguous paths buys: a path that is not refused has one
// reading. Its normal form holds no escape, no dot or empty segment and nothing a second
// decoding, a ';' or '\' splitter or a Unicode normaliser would read differently, and
// normalising it only decodes it once and drops a trailing slash.
func FuzzAmbiguous(f *testing.F) {
	for _, s := range []string{
		"/", "/api/engine/v2/api_keys", "/a/../b", "/a%2fb", "/a%252f", "/a;b", "/caf%C3%A9",
		"/\uff0f", "/a/", "/a//b", "/a.", "/%c0%af", "/a#b", "/a?b=%2f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if Ambiguous(target) != "" {
			return
		}
		path, _, _ := strings.Cut(target, "?")
		norm := NormalizePath(path)
		if strings.ContainsAny(norm, "%;\\#?") || !utf8.ValidString(norm) {
			t.Fatalf("Ambiguous(%q) = \"\", but its normal form %q holds an escape or a separator", target, norm)
		}
		if want := strings.TrimSuffix(decodeOnce(path), "/"); norm != want && !(want == "" && norm == "/") {
			t.Fatalf("NormalizePath(%q) = %q, want the path decoded once without a trailing slash %q", path, norm, want)
		}
		for seg := range strings.SplitSeq(norm[1:], "/") {
			if seg == "." || seg == ".." || (seg == "" && norm != "/") {
				t.Fatalf("Ambiguous(%q) = \"\", but its normal form %q holds segment %q", target, norm, seg)
			}
		}
	})
}
