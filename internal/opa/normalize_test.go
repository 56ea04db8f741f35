package opa

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizePath(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "/"},
		{"/api/engine/v2/systems/../api_keys", "/api/engine/v2/api_keys"},
		{"/api/engine/v2/systems/%2e%2e/api_keys", "/api/engine/v2/api_keys"},
		{"/api/engine/v2/systems/%2E%2E/api_keys", "/api/engine/v2/api_keys"},
		{"//a///b/", "/a/b"},
		{"/../../x", "/x"},
		{"/a/./b", "/a/b"},
		{"/a/b/.", "/a/b"},
		{"/a/b/..", "/a"},
		{"a/b", "/a/b"},
		{"/a/", "/a"},
		{"/a%2Fb", "/a/b"},
		{"/a%2f..%2fb", "/b"},
		{"/a%252e%252e/b", "/a%252e%252e/b"}, // decoded once: "%2e%2e" is not ".."
		{"/a%2525", "/a%2525"},
		{"/a%25", "/a%"},
		{"/a%", "/a%"},
		{"/a%zz", "/a%zz"},
		{"/a%2", "/a%2"},
		{"/a%%4141", "/a%25A41"}, // decoded "%A41": its literal %, before hex digits, is escaped
		{"/a%3Fb", "/a%3Fb"},
		{"/a?b", "/a%3Fb"},
		{"/a%23b#c", "/a%23b%23c"},
		{"/a/..;/b", "/a/..;/b"},
		{"/%00", "/\x00"},
		{"/caf%C3%A9", "/café"},
		{"/systems/sys-1", "/systems/sys-1"},
	}
	for _, tc := range tests {
		got := NormalizePath(tc.in)
		if got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := NormalizePath(got); again != got {
			t.Errorf("NormalizePath(%q) = %q, not idempotent", got, again)
		}
	}
}

func TestSplitURI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		wantPath  string
		wantQuery map[string][]string
	}{
		{"", "", map[string][]string{}},
		{"/a", "/a", map[string][]string{}},
		{"/a?", "/a", map[string][]string{}},
		{"/a?x=1&x=2&y", "/a", map[string][]string{"x": {"1", "2"}, "y": {""}}},
		{"/a?x=1#frag?y=2", "/a", map[string][]string{"x": {"1"}}},
		{"/a#frag?x=1", "/a", map[string][]string{}},
		{"/a?bad=%zz&ok=1&semi=1;2&c=%2Fguest%2F", "/a", map[string][]string{"ok": {"1"}, "c": {"/guest/"}}},
		{"/a%3Fb?api-key=secret", "/a%3Fb", map[string][]string{"api-key": {"secret"}}},
		{"/a?x=1?y=2", "/a", map[string][]string{"x": {"1?y=2"}}},
	}
	for _, tc := range tests {
		path, query := SplitURI(tc.in)
		if path != tc.wantPath {
			t.Errorf("SplitURI(%q) path = %q, want %q", tc.in, path, tc.wantPath)
		}
		if diff := cmp.Diff(tc.wantQuery, query); diff != "" {
			t.Errorf("SplitURI(%q) query (-want +got):\n%s", tc.in, diff)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"", "/", "/a/../b", "/%2e%2e/x", "//a//b//", "/a%2525"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := NormalizePath(p)
		if slow := normalize(p); slow != got {
			t.Fatalf("fast path disagrees: %q -> %q, full normalisation %q", p, got, slow)
		}
		if again := NormalizePath(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", p, got, again)
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q: does not start with /", p, got)
		}
		if strings.Contains(got, "//") || strings.ContainsAny(got, "?#") {
			t.Fatalf("%q -> %q: holds //, ? or #", p, got)
		}
		if got != "/" && strings.HasSuffix(got, "/") {
			t.Fatalf("%q -> %q: trailing slash", p, got)
		}
		for seg := range strings.SplitSeq(got[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment", p, got)
			}
		}
	})
}

// TestNormalizePathFastPath checks that the allocation-free path for canonical input gives
// exactly what the full normalisation gives.
func TestNormalizePathFastPath(t *testing.T) {
	for _, p := range []string{
		"/", "/a", "/a/b", "/api/engine/v2/systems/sys-1", "/a/.b/c.", "/a/..b", "/a/b..",
		"//", "/a/", "/a//b", "/./a", "/a/.", "/a/..", "/a/../b", "/a%2e", "/a?b", "/a#b", "a", "",
	} {
		fast := isCanonical(p)
		if fast && NormalizePath(p) != p {
			t.Errorf("isCanonical(%q) but NormalizePath gives %q", p, NormalizePath(p))
		}
		if !fast && p != "" && NormalizePath(p) == p && p != "/" {
			t.Errorf("%q is canonical but isCanonical says no", p)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = NormalizePath("/api/engine/v2/systems/sys-1") }); n != 0 {
		t.Errorf("NormalizePath of a canonical path allocates %v times", n)
	}
}
