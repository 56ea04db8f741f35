package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// docsKey is the example key of the PlaceOS documentation.
const docsKey = "be2aba8c8bd2be2a5c719339695b5a63.Edm7STXHDbacbsytz4RGvFc51PnBdQtcU9Yo7BSSVHw"

func refHash(id, secret string) string {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		plaintext, id, hash, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		gotID, secret, ok := ParseKey(string(plaintext))
		if !ok || gotID != id {
			t.Fatalf("ParseKey(Generate()) = %q, %v; want id %q", gotID, ok, id)
		}
		if got, want := hash, refHash(id, secret); got != want {
			t.Fatalf("hash = %s, want %s", got, want)
		}
		if !VerifyHash(id, secret, hash) {
			t.Fatal("VerifyHash rejects a generated key")
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestParseKey(t *testing.T) {
	id, secret, _ := strings.Cut(docsKey, ".")
	tests := []struct {
		note string
		in   string
		ok   bool
	}{
		{"docs example", docsKey, true},
		{"empty", "", false},
		{"no dot", id + secret, false},
		{"dot elsewhere", id[:31] + "." + id[31:] + secret, false},
		{"uppercase hex id", strings.ToUpper(id) + "." + secret, false},
		{"non-hex id", "g" + id[1:] + "." + secret, false},
		{"trailing NUL", docsKey + "\x00", false},
		{"trailing newline", docsKey + "\n", false},
		{"leading space", " " + docsKey, false},
		{"short secret", id + "." + secret[:42], false},
		{"padded secret", id + "." + secret + "=", false},
		{"std base64 char", id + "." + "+" + secret[1:], false},
		{"non-canonical last char", id + "." + secret[:42] + "x", false},
		{"two dots", id + "." + secret[:21] + "." + secret[22:], false},
		{"multibyte", id + "." + secret[:41] + "é", false},
		{"canonical last char A", id + "." + secret[:42] + "A", true},
		{"canonical last char 8", id + "." + secret[:42] + "8", true},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			gotID, gotSecret, ok := ParseKey(tt.in)
			if ok != tt.ok {
				t.Fatalf("ParseKey(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && gotID+"."+gotSecret != tt.in {
				t.Errorf("ParseKey(%q) = %q, %q", tt.in, gotID, gotSecret)
			}
			if !ok && (gotID != "" || gotSecret != "") {
				t.Errorf("ParseKey(%q) returned parts on failure", tt.in)
			}
		})
	}
}

func TestParseKeyDoesNotAllocate(t *testing.T) {
	for _, in := range []string{docsKey, docsKey + "\x00", "nope"} {
		if n := testing.AllocsPerRun(100, func() { ParseKey(in) }); n != 0 {
			t.Errorf("ParseKey(%q) allocates %v times", in, n)
		}
	}
}

func TestVerifyHash(t *testing.T) {
	id, secret, _ := strings.Cut(docsKey, ".")
	long := strings.Repeat("s", 200)
	good := refHash(id, secret)
	tests := []struct {
		note               string
		id, secret, stored string
		want               bool
	}{
		{"match", id, secret, good, true},
		{"uppercase stored hex", id, secret, strings.ToUpper(good), true},
		{"wrong secret", id, secret[:42] + "A", good, false},
		{"secret plus NUL has the same HMAC", id, secret + "\x00", good, true}, // why ParseKey must be strict
		{"wrong id", "0" + id[1:], secret, good, false},
		{"truncated stored", id, secret, good[:126], false},
		{"non-hex stored", id, secret, "zz" + good[2:], false},
		{"empty stored", id, secret, "", false},
		{"long secret", id, long, refHash(id, long), true},
		{"long secret wrong", id, long + "x", refHash(id, long), false},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			if got := VerifyHash(tt.id, tt.secret, tt.stored); got != tt.want {
				t.Errorf("VerifyHash = %v, want %v", got, tt.want)
			}
			if tt.want && HashKey(tt.id, tt.secret) != strings.ToLower(tt.stored) {
				t.Errorf("HashKey disagrees with the reference")
			}
		})
	}
}

func TestSecretRedaction(t *testing.T) {
	s := Secret(docsKey)
	id, secret, _ := strings.Cut(docsKey, ".")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("created", "key", s)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s),
		"%q":   fmt.Sprintf("%q", s),
		"%#v":  fmt.Sprintf("%#v", s),
		"%x":   fmt.Sprintf("%x", s),
		"%+v":  fmt.Sprintf("%+v", struct{ K Secret }{s}),
		"slog": logged.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["slog"], id) {
		t.Errorf("slog output should keep the key id: %s", outputs["slog"])
	}
	b, err := json.Marshal(struct {
		Key Secret `json:"x_api_key"`
	}{s})
	if err != nil || !strings.Contains(string(b), docsKey) {
		t.Errorf("JSON must carry the plaintext for the create response: %s, %v", b, err)
	}
}

var keyShape = regexp.MustCompile(`^[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$`)

func FuzzParseKey(f *testing.F) {
	f.Add(docsKey)
	f.Add(docsKey + "\x00")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := ParseKey(s)
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s[min(len(s), 33):])
		want := keyShape.MatchString(s) && err == nil && len(raw) == 32
		if ok != want {
			t.Fatalf("ParseKey(%q) ok = %v, want %v", s, ok, want)
		}
		if !ok {
			return
		}
		if id+"."+secret != s || len(id) != 32 {
			t.Fatalf("ParseKey(%q) = %q, %q", s, id, secret)
		}
		if back := base64.RawURLEncoding.EncodeToString(raw); back != secret {
			t.Fatalf("round trip: %q != %q", back, secret)
		}
		if !VerifyHash(id, secret, HashKey(id, secret)) {
			t.Fatal("VerifyHash(HashKey) is false")
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	plaintext, _, hash, err := Generate()
	if err != nil {
		b.Fatal(err)
	}
	key := string(plaintext)
	b.ReportAllocs()
	for b.Loop() {
		id, secret, ok := ParseKey(key)
		if !ok || !VerifyHash(id, secret, hash) {
			b.Fatal("verification failed")
		}
	}
}
