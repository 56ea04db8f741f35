package opa

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestAstValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note string
		in   Input
	}{
		{note: "zero"},
		{note: "anonymous", in: Input{Request: Request{Method: "GET", Path: "/api/engine/v2", Host: "localhost", Protocol: "http", Query: map[string][]string{}}}},
		{note: "nil query values", in: Input{Request: Request{Method: "POST", Query: map[string][]string{"a": nil, "b": {}, "c": {"1", "2"}}}}},
		{note: "domain only", in: Input{Request: request("GET", "/x"), Domain: &Domain{ID: "d", Name: "Dom", Domain: "localhost"}}},
		{
			note: "full",
			in: Input{
				Request: Request{Method: "GET", Path: "/systems/sys-1", Host: "example.com", Protocol: "websocket", Query: map[string][]string{"channel": {"x/guest/y"}, "api-key": {""}}, CrossSite: true},
				Domain:  &Domain{ID: "dom-1", Name: "Example", Domain: "example.com"},
				Key:     &Key{ID: "k", AuthorityID: "dom-1", Scopes: []string{"systems.read", "guest"}, Permissions: "support", Source: "cookie"},
				User:    &User{ID: "u", AuthorityID: "dom-1", Name: "Ann \"quoted\" é", Email: "a@example.com", SysAdmin: true, Support: false, Groups: []string{"sys-1"}},
			},
		},
		{
			note: "nil slices",
			in: Input{
				Request: request("DELETE", "/"),
				Key:     &Key{ID: "k"},
				User:    &User{ID: "u", Support: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			raw, err := json.Marshal(&tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var doc any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			want, err := ast.InterfaceToValue(doc)
			if err != nil {
				t.Fatal(err)
			}
			got := tc.in.astValue()
			if want.Compare(got) != 0 || want.Hash() != got.Hash() {
				t.Errorf("astValue() = %v\nwant (JSON)  %v", got, want)
			}
		})
	}
}

// TestSetTerms checks that an input given its parts' prebuilt terms is the same Rego value as
// one built from scratch.
func TestSetTerms(t *testing.T) {
	in := Input{
		Request: request("GET", "/api/engine/v2/systems/sys-1"),
		Domain:  &Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
		Key:     keyWith("systems.read"),
		User:    &User{ID: "u", AuthorityID: "dom-1", Name: "Ann", SysAdmin: true, Groups: []string{"sys-1"}},
	}
	want := in.astValue()
	in.SetTerms(Terms{Key: in.Key.Term(), User: in.User.Term(), Domain: in.Domain.Term()})
	if got := in.astValue(); got.Compare(want) != 0 {
		t.Errorf("with terms %v, want %v", got, want)
	}
}
