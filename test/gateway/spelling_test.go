package gateway

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"text/template"
	"unicode"
)

// spelling is one line of testdata/spellings.txt.
type spelling struct {
	name           string
	method, target *template.Template
}

var spellingFuncs = template.FuncMap{
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	// enc2 double-encodes the first ASCII letter: "api_keys" -> "%2561pi_keys".
	"enc2": func(s string) string {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x80 && unicode.IsLetter(rune(c)) {
				return s[:i] + "%25" + fmt.Sprintf("%02X", c) + s[i+1:]
			}
		}
		return s
	},
	// fullwidth writes ASCII letters as their fullwidth forms (U+FF21..), which NFKC folds back.
	"fullwidth": func(s string) string {
		return strings.Map(func(r rune) rune {
			if r < 0x80 && unicode.IsLetter(r) {
				return r - 'A' + 0xFF21
			}
			return r
		}, s)
	},
}

func readSpellings(t *testing.T) []spelling {
	t.Helper()
	raw, err := os.ReadFile("testdata/spellings.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []spelling
	for n, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 {
			t.Fatalf("spellings.txt:%d: want name, method and target separated by tabs: %q", n+1, line)
		}
		out = append(out, spelling{parts[0],
			template.Must(template.New("m").Funcs(spellingFuncs).Parse(parts[1])),
			template.Must(template.New("t").Funcs(spellingFuncs).Parse(parts[2]))})
	}
	if len(out) < 18 {
		t.Fatalf("spellings.txt has %d spellings, want the canonical one and at least 17", len(out))
	}
	return out
}

func execute(t *testing.T, tmpl *template.Template, f family) string {
	t.Helper()
	var b strings.Builder
	if err := tmpl.Execute(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSpellingsThroughNginx sends every spelling of testdata/spellings.txt of every gated route
// family through nginx (auth_request to /authz/nginx, configured from docs/gateways.md) to a Go
// ServeMux that registers the gated handlers. Property: no request that the backend routes to a
// gated handler is allowed for a caller who lacks that gate (a user-level key with `public`);
// and the admin key, which has every gate, is allowed on each canonical spelling.
func TestSpellingsThroughNginx(t *testing.T) {
	spellings := readSpellings(t)
	s := startHostileStack(t)
	ranGated := map[string]int{} // by spelling name, for the log
	for _, f := range gatedFamilies {
		t.Run(f.Pattern, func(t *testing.T) {
			for _, sp := range spellings {
				method, target := execute(t, sp.method, f), execute(t, sp.target, f)
				status, id := s.send(t, method, target, []string{"X-API-Key: " + s.user.Key})
				got, reached := s.backend.lookup(id)
				if reached && gated(got.Pattern) {
					t.Errorf("%s: %s %q: nginx let a user-level key run the gated handler %q (answer %d, backend saw %s %s)",
						sp.name, method, target, got.Pattern, status, got.Method, got.URI)
				}
				if sp.name == "canonical" {
					if status != 403 || reached {
						t.Errorf("canonical %s %s with the user key: %d, reached backend %v", method, target, status, reached)
					}
					status, id := s.send(t, method, target, []string{"X-API-Key: " + s.admin.Key})
					if got, ok := s.backend.lookup(id); status != 200 || !ok || got.Pattern != f.Pattern {
						t.Errorf("canonical %s %s with the admin key: %d, backend ran %q", method, target, status, got.Pattern)
					}
				}
				// The admin key on every spelling: whatever ran, ran as the admin, and keyauthz
				// never allowed a spelling it calls ambiguous.
				_, id = s.send(t, method, target, []string{"X-API-Key: " + s.admin.Key})
				if got, ok := s.backend.lookup(id); ok && got.KeyID != s.admin.ID {
					t.Errorf("%s: %s %q ran without the admin's identity: %+v", sp.name, method, target, got)
				} else if ok && gated(got.Pattern) {
					ranGated[sp.name]++
				}
			}
		})
	}
	t.Logf("spellings on which the admin key ran a gated handler (by spelling): %v", ranGated)
}
