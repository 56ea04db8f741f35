package opa

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// benchInput is a request of the built-in policy's table by a key of acme.example.com whose
// user (a plain user, member of sys-1) it emulates; scopes nil means no key at all.
func benchInput(method, path string, perm string, scopes ...string) *Input {
	in := &Input{
		Request: Request{Method: method, Path: path, Host: "acme.example.com", Protocol: "http", Query: map[string][]string{}},
		Domain:  &Domain{ID: "authority-acme", Name: "Acme", Domain: "acme.example.com"},
	}
	if scopes != nil {
		in.Key = &Key{ID: "0123456789abcdef0123456789abcdef", AuthorityID: "authority-acme", Scopes: scopes, Permissions: perm, Source: "header"}
		in.User = &User{ID: "user-1", AuthorityID: "authority-acme", Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	}
	return in
}

// BenchmarkDecide is one uncached evaluation per decision kind: builtin/<kind> runs the
// built-in policy (its route index materialised, as serve runs it) on the request below, with
// the input built per call as the credential path does.
func BenchmarkDecide(b *testing.B) {
	builtin, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	test := loadTestPolicy(b, "a")
	cases := []struct {
		name       string
		in         *Input
		wantStatus int
	}{
		{"test-policy/allow", &Input{Request: request("GET", "/systems"), Key: keyWith("systems")}, 200},
		// An allow: systems.read on GET /systems/:id (no gate).
		{"builtin/allow", benchInput("GET", "/api/engine/v2/systems/sys-1", "user", "systems.read", "control"), 200},
		// No key on a scoped route.
		{"builtin/401-no-key", benchInput("GET", "/api/engine/v2/systems/sys-1", ""), 401},
		// A key without the route's scope.
		{"builtin/403-scope", benchInput("GET", "/api/engine/v2/systems/sys-1", "user", "zones.read", "control"), 403},
		// The scope, but the admin gate of GET /api_keys with a user key.
		{"builtin/403-gate", benchInput("GET", "/api/engine/v2/api_keys", "user", "api_keys.read"), 403},
		// A guest key on a guest route outside its roles.
		{"builtin/403-guest", benchInput("GET", "/api/engine/v2/systems/sys-2", "user", "guest"), 403},
		// A path no route of the table matches: the catch-all, public.read.
		{"builtin/unlisted", benchInput("GET", "/api/staff/v1/bookings", "user", "public.read"), 200},
	}
	for _, tc := range cases {
		bnd := test
		if strings.HasPrefix(tc.name, "builtin") {
			bnd = builtin
		}
		e, err := New(context.Background(), bnd, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			if r := e.Decide(ctx, tc.in); r.Decision.Status != tc.wantStatus {
				b.Fatalf("decision %+v (%v), want status %d", r.Decision, r.Err, tc.wantStatus)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := e.Decide(ctx, tc.in); r.Decision.Status == 500 {
					b.Fatalf("decision failed: %v", r.Err)
				}
			}
		})
	}
}

func BenchmarkAstValue(b *testing.B) {
	in := &Input{
		Request: request("GET", "/api/engine/v2/systems/sys-1"),
		Domain:  &Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
		Key:     keyWith("systems.read"),
		User:    &User{ID: "u", AuthorityID: "dom-1", Name: "Ann", Groups: []string{"sys-1"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = in.astValue()
	}
}
