package opa

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

func BenchmarkDecide(b *testing.B) {
	builtin, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	test := loadTestPolicy(b, "a")
	cases := []struct {
		name string
		in   *Input
	}{
		{"test-policy/allow", &Input{Request: request("GET", "/systems"), Key: keyWith("systems")}},
		{"builtin/no-key", &Input{Request: request("GET", "/api/engine/v2/systems")}},
		{"builtin/scoped-key", &Input{
			Request: request("GET", "/api/engine/v2/systems/sys-1"),
			Domain:  &Domain{ID: "dom-1", Name: "Local", Domain: "localhost"},
			Key:     keyWith("systems.read"),
			User:    &User{ID: "u", AuthorityID: "dom-1", Name: "Ann", SysAdmin: true, Groups: []string{"sys-1"}},
		}},
	}
	for _, tc := range cases {
		bnd := test
		if tc.name[:7] == "builtin" {
			bnd = builtin
		}
		e, err := New(context.Background(), bnd, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if d := e.Decide(ctx, tc.in).Decision; d.Status == 500 {
					b.Fatalf("decision failed: %+v", d)
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
