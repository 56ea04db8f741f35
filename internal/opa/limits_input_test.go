package opa

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestLimitsInput checks the input's limit parts (docs/limits.md): request.client_ip and
// key.allowed_cidrs are the JSON encoding's, absent when empty, both when built from scratch and
// from the key's prebuilt term.
func TestLimitsInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note string
		in   Input
	}{
		{note: "no client address, no allow-list", in: Input{Request: request("GET", "/x"), Key: &Key{ID: "k", Scopes: []string{}}}},
		{note: "client address", in: Input{Request: Request{Method: "GET", Path: "/x", ClientIP: "192.0.2.1"}}},
		{note: "empty allow-list is absent", in: Input{Request: request("GET", "/x"), Key: &Key{ID: "k", AllowedCIDRs: []string{}}}},
		{note: "both", in: Input{
			Request: Request{Method: "GET", Path: "/x", Host: "localhost", ClientIP: "2001:db8::1", Query: map[string][]string{}},
			Key:     &Key{ID: "k", Scopes: []string{"public"}, AllowedCIDRs: []string{"2001:db8::/32", "192.0.2.0/24"}},
		}},
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
			if got := tc.in.astValue(); want.Compare(got) != 0 || want.Hash() != got.Hash() {
				t.Errorf("astValue() = %v\nwant (JSON)  %v", got, want)
			}
			if tc.in.Key != nil {
				in := tc.in
				in.SetKeyTerm(in.Key.Term())
				if got := in.astValue(); want.Compare(got) != 0 {
					t.Errorf("with the key's term %v, want %v", got, want)
				}
			}
		})
	}
}
