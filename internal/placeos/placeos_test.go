package placeos

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// hash is a well-formed api_key.secret (128 hex digits); its value never matters here.
var hash = strings.Repeat("ab", 64)

const keyID = "0123456789abcdef0123456789abcdef"

// TestParse reads the same three rows from each form PlaceOS's database gives them in, and
// checks what keyauthz keeps of them.
func TestParse(t *testing.T) {
	wantDomain := keys.ImportDomain{Line: 1, Domain: keys.Domain{ID: "authority-AbC12", Name: "Acme", Domain: "acme.example.com", Description: "HQ", CreatedAt: 1700000000, UpdatedAt: 1700000001}}
	wantUser := keys.ImportUser{Line: 2, User: keys.User{ID: "user-Xy9", AuthorityID: "authority-AbC12", Name: "Panel", Email: "panel@acme.example.com", Support: true, Groups: []string{"zone-1", "a b"}, CreatedAt: 1700000000, UpdatedAt: 1700000000}}
	exp := int64(1800000000)
	wantKey := keys.ImportKey{Line: 3, Hash: hash, Key: keys.APIKey{ID: keyID, Name: "booking panel", Description: "", Scopes: []string{"systems.read", "control"}, Permissions: keys.PermissionSupport, UserID: "user-Xy9", AuthorityID: "authority-AbC12", ExpiresAt: &exp, CreatedAt: 1700000000, UpdatedAt: 1700000000}}
	want := &keys.ImportBatch{Domains: []keys.ImportDomain{wantDomain}, Users: []keys.ImportUser{wantUser}, Keys: []keys.ImportKey{wantKey}}

	cases := []struct {
		name   string
		format Format
		input  string
	}{
		{"row_to_json", JSONLines, `{"id":"authority-AbC12","name":"Acme","description":"HQ","domain":"acme.example.com","login_url":"/login","config":{},"created_at":"2023-11-14T22:13:20+00:00","updated_at":"2023-11-14T22:13:21.000+00:00"}
{"id":"user-Xy9","authority_id":"authority-AbC12","name":"Panel","email":"panel@acme.example.com","support":true,"sys_admin":false,"groups":["zone-1","a b"],"password_digest":"$2a$10$zzz","created_at":"2023-11-14T22:13:20.123456+00:00","updated_at":"2023-11-14T22:13:20+00:00"}
{"id":"` + keyID + `","name":"booking panel","description":"","scopes":["systems.READ","control"],"permissions":1,"secret":"` + hash + `","user_id":"user-Xy9","authority_id":"authority-AbC12","expires_at":"2027-01-15T08:00:00+00:00","created_at":"2023-11-14T22:13:20+00:00","updated_at":"2023-11-14T22:13:20+00:00"}
`},
		{"API shape, table named, CRLF", JSONLines, "\xef\xbb\xbf" + `{"table":"authority","id":"authority-AbC12","name":"Acme","description":"HQ","domain":"acme.example.com","created_at":1700000000,"updated_at":1700000001}` + "\r\n" +
			`{"table":"user","id":"user-Xy9","authority_id":"authority-AbC12","name":"Panel","email":"panel@acme.example.com","support":"t","groups":"{zone-1,\"a b\"}","created_at":1700000000}` + "\r\n" +
			`{"table":"api_key","id":"` + keyID + `","name":"booking panel","scopes":["systems.read","control"],"permissions":"Support","secret":"` + strings.ToUpper(hash) + `","user_id":"user-Xy9","authority_id":"authority-AbC12","expires_at":1800000000,"created_at":1700000000}` + "\r\n"},
		{"psql CSV, three sections", CSV, `id,name,description,domain,login_url,created_at,updated_at
authority-AbC12,Acme,HQ,acme.example.com,/login,2023-11-14 22:13:20+00,2023-11-14 22:13:21.5+00
id,authority_id,name,email,support,sys_admin,groups,password_digest,created_at,updated_at
user-Xy9,authority-AbC12,Panel,panel@acme.example.com,t,f,"{zone-1,""a b""}",$2a$10$zzz,2023-11-14 22:13:20+00,
id,name,description,scopes,permissions,secret,user_id,authority_id,expires_at,created_at,updated_at
` + keyID + `,booking panel,,"[""systems.read"", ""control""]",1,` + hash + `,user-Xy9,authority-AbC12,2027-01-15 08:00:00+00,1700000000,
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Sniff([]byte(c.input)); got != c.format {
				t.Errorf("Sniff = %v, want %v", got, c.format)
			}
			got, err := Parse(strings.NewReader(c.input), c.format)
			if err != nil {
				t.Fatal(err)
			}
			// Lines of CSV are those of the data rows, after their headers.
			if c.format == CSV {
				for i := range want.Domains {
					want.Domains[i].Line = 2
				}
				want.Users[0].Line, want.Keys[0].Line = 4, 6
			} else {
				want.Domains[0].Line, want.Users[0].Line, want.Keys[0].Line = 1, 2, 3
			}
			if err := keys.PrepareImport(got, timeZero); err != nil {
				t.Fatal(err)
			}
			if err := keys.PrepareImport(want, timeZero); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("batch (-want +got):\n%s", d)
			}
		})
	}
}

// TestParseBadRows: every bad row is reported with its line and what is wrong, never with the
// value of a secret column; one bad row makes the whole parse fail.
func TestParseBadRows(t *testing.T) {
	const secretValue = "hunter2-digest"
	cases := []struct {
		name   string
		format Format
		input  string
		want   []string // "line N: ..." substrings, in order
	}{
		{"not JSON", JSONLines, `{"id":"authority-1","name":"A","domain":"a.example"}` + "\n{nope " + secretValue + "\n", []string{"line 2: not a JSON object (JSON syntax error at byte 2)"}},
		{"not an object", JSONLines, "\n\n[1,2]\n", []string{"line 3: not a JSON object"}},
		{"unknown table", JSONLines, `{"id":"x","name":"y"}` + "\n" + `{"table":"edge","id":"e"}`, []string{
			`line 1: cannot tell the table from the columns`, `line 2: "table" must be`}},
		{"missing columns", JSONLines, `{"table":"api_key","id":"` + keyID + `","secret":"` + hash + `","name":"k"}`, []string{"line 1: api_key row: user_id is missing"}},
		{"wrong types", JSONLines, `{"id":"user-1","authority_id":"a","name":"n","email":"e@x","sys_admin":"` + secretValue + `"}` + "\n" +
			`{"id":"` + keyID + `","secret":"` + hash + `","name":"k","user_id":"u","scopes":"public"}` + "\n" +
			`{"id":"` + keyID + `","secret":"` + hash + `","name":"k","user_id":"u","scopes":[],"expires_at":"tomorrow"}` + "\n" +
			`{"id":"a-1","name":1,"domain":"d.example"}`, []string{
			"line 1: user row: sys_admin is not true or false", "line 2: api_key row: scopes is not a list of strings",
			"line 3: api_key row: expires_at is not a time", "line 4: authority row: name is not text"}},
		{"CSV without header", CSV, "authority-1,Acme,acme.example.com\n", []string{"line 1: expected a header row"}},
		{"CSV field count", CSV, "id,name,domain\nauthority-1,Acme\nauthority-2,B,b.example\n\"x,y\n", []string{
			"line 2: authority row: has 2 fields, its header has 3", "line 4: authority row: CSV syntax error on line 4"}},
		{"CSV bad array", CSV, "id,authority_id,name,email,groups,password_digest\nuser-1,a,n,e@x,\"{a,{b}}\"," + secretValue + "\n", []string{
			"line 2: user row: groups is not a list of strings"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.input), c.format)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, want *Error", err)
			}
			msg := err.Error()
			if strings.Contains(msg, secretValue) || strings.Contains(msg, hash) {
				t.Errorf("the error shows a secret value:\n%s", msg)
			}
			rest := msg
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error does not contain %q (in order):\n%s", w, msg)
				}
				rest = rest[i+len(w):]
			}
			if got := len(pe.Failures()); got != len(c.want) {
				t.Errorf("%d failures, want %d:\n%s", got, len(c.want), msg)
			}
		})
	}
}

// TestParseErrorCap: a file of bad rows reports the first maxErrors and counts the rest.
func TestParseErrorCap(t *testing.T) {
	_, err := Parse(strings.NewReader(strings.Repeat("[]\n", maxErrors+5)), JSONLines)
	var pe *Error
	if !errors.As(err, &pe) || len(pe.Rows) != maxErrors || pe.More != 5 {
		t.Fatalf("Parse = %v", err)
	}
	if f := pe.Failures(); f[len(f)-1].Reason != "and 5 more bad rows" {
		t.Errorf("last failure = %+v", f[len(f)-1])
	}
}

// TestParseList covers the list forms a PlaceOS column arrives in.
func TestParseList(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", []string{}, true},
		{"{}", []string{}, true},
		{`["a","b"]`, []string{"a", "b"}, true},
		{`{a, b ,NULL,"NULL","x\"y","c,d"}`, []string{"a", "b", "NULL", `x"y`, "c,d"}, true},
		{`{a,,b}`, nil, false},
		{`{"a}`, nil, false},
		{`{{a}}`, nil, false},
		{`{"a"b}`, nil, false},
		{`[1]`, nil, false},
		{`public`, nil, false},
	}
	for _, c := range cases {
		got, err := parseList(c.in)
		if (err == nil) != c.ok || !cmp.Equal(got, c.want) {
			t.Errorf("parseList(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestParseTime covers the timestamp forms of row_to_json, psql and PlaceOS's API.
func TestParseTime(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1700000000", 1700000000, true},
		{"1700000000.9", 1700000000, true},
		{"2023-11-14T22:13:20Z", 1700000000, true},
		{"2023-11-14T23:13:20+01:00", 1700000000, true},
		{"2023-11-14 22:13:20.123456+00", 1700000000, true},
		{"2023-11-14 22:13:20+00:00", 1700000000, true},
		{"2023-11-14 22:13:20", 1700000000, true},
		{"NaN", 0, false},
		{"1e300", 0, false},
		{"yesterday", 0, false},
	}
	for _, c := range cases {
		if got, ok := parseTime(c.in); got != c.want || ok != c.ok {
			t.Errorf("parseTime(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
