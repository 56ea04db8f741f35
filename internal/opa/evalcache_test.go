package opa

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestVirtualCacheMatchesOPA runs the same random sequences of Push, Pop, Put and Get on
// virtualCache and on OPA's own topdown.NewVirtualCache, and requires the same answers: the
// evaluator must not be able to tell them apart. The refs include function-call keys with
// object arguments (the route objects the policy passes), refs of several lengths sharing
// prefixes, and undefined results; each sequence reuses one pooled cache, as eval does.
func TestVirtualCacheMatchesOPA(t *testing.T) {
	t.Parallel()
	refs := []ast.Ref{
		ast.MustParseRef("data.keyauthz.decision"),
		ast.MustParseRef("data.keyauthz.level"),
		ast.MustParseRef("data.keyauthz.routing.index"),
		ast.MustParseRef("data.keyauthz.routing.index.methods"),
		ast.MustParseRef(`data.keyauthz.routing.segments["/a/b"]`),
		ast.MustParseRef(`data.keyauthz.routing.segments["/a/c"]`),
		append(ast.MustParseRef("data.keyauthz.scope_ok"), ast.MustParseTerm(`{"grants": {"a": true}, "gate": "none"}`)),
		append(ast.MustParseRef("data.keyauthz.scope_ok"), ast.MustParseTerm(`{"grants": {"b": true}, "gate": "none"}`)),
		append(ast.MustParseRef("data.keyauthz.gate_ok"), ast.MustParseTerm(`{"gate_min": 2}`), ast.IntNumberTerm(1)),
		append(ast.MustParseRef("data.keyauthz.gate_ok"), ast.MustParseTerm(`{"gate_min": 2}`), ast.IntNumberTerm(2)),
	}
	values := []*ast.Term{nil, ast.BooleanTerm(true), ast.StringTerm("x"), ast.MustParseTerm(`{"status": 200}`)}
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rnd := rand.New(rand.NewPCG(seed, 1))
			ours := getEvalCaches(nil, nil)
			defer ours.put()
			theirs := topdown.NewVirtualCache()
			depth := 1
			for step := range 300 {
				ref := refs[rnd.IntN(len(refs))]
				// A fresh copy of the ref, as the evaluator's reused key slices would be.
				ref = slices.Clone(ref)
				switch op := rnd.IntN(10); {
				case op == 0:
					ours.virtual.Push()
					theirs.Push()
					depth++
				case op == 1 && depth > 1:
					ours.virtual.Pop()
					theirs.Pop()
					depth--
				case op < 5:
					v := values[rnd.IntN(len(values))]
					ours.virtual.Put(ref, v)
					theirs.Put(ref, v)
				default:
					gotV, gotU := ours.virtual.Get(ref)
					wantV, wantU := theirs.Get(ref)
					if gotU != wantU || !gotV.Equal(wantV) {
						t.Fatalf("step %d: Get(%v) = %v, %v; OPA's cache: %v, %v", step, ref, gotV, gotU, wantV, wantU)
					}
				}
				got, want := refStrings(ours.virtual.Keys()), refStrings(theirs.Keys())
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("step %d: Keys (-OPA's +ours):\n%s", step, diff)
				}
			}
		})
	}
}

func refStrings(refs []ast.Ref) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.String()
	}
	slices.Sort(out)
	return out
}

// TestBaseCache checks baseCache against the semantics of OPA's: a value is found at its ref
// and inside the value of its shortest cached prefix; a value put at a ref replaces what was
// cached below it; the preloaded prefix answers for everything below it and is never replaced.
func TestBaseCache(t *testing.T) {
	t.Parallel()
	ref := ast.MustParseRef
	val := func(s string) ast.Value { return ast.MustParseTerm(s).Value }
	type put struct {
		ref ast.Ref
		val ast.Value
	}
	tests := []struct {
		name     string
		preRef   ast.Ref
		preValue ast.Value
		puts     []put
		get      ast.Ref
		want     ast.Value // nil: not cached
	}{
		{"empty", nil, nil, nil, ref("data.a"), nil},
		{"exact", nil, nil, []put{{ref("data.a"), val(`{"b": 1}`)}}, ref("data.a"), val(`{"b": 1}`)},
		{"inside", nil, nil, []put{{ref("data.a"), val(`{"b": {"c": 2}}`)}}, ref("data.a.b.c"), val("2")},
		{"inside, absent", nil, nil, []put{{ref("data.a"), val(`{"b": 1}`)}}, ref("data.a.x"), nil},
		{"not a prefix", nil, nil, []put{{ref("data.a.b"), val("1")}}, ref("data.a"), nil},
		{"shortest prefix wins", nil, nil, []put{{ref("data.a.b"), val("1")}, {ref("data.a"), val(`{"b": 2}`)}}, ref("data.a.b"), val("2")},
		{"a longer put under a shorter one", nil, nil, []put{{ref("data.a"), val(`{"b": 2}`)}, {ref("data.a.b"), val("1")}}, ref("data.a.b"), val("2")},
		{"sibling", nil, nil, []put{{ref("data.a.b"), val("1")}, {ref("data.a.c"), val("3")}}, ref("data.a.c"), val("3")},
		{"preloaded", ref("data.k.routes"), val(`{"index": {"GET": 1}}`), nil, ref("data.k.routes.index.GET"), val("1")},
		{"preloaded, absent below", ref("data.k.routes"), val(`{"index": {}}`), nil, ref("data.k.routes.table"), nil},
		{"preloaded is not replaced", ref("data.k.routes"), val(`{"t": 1}`), []put{{ref("data.k.routes"), val(`{"t": 2}`)}}, ref("data.k.routes.t"), val("1")},
		{"preloaded, other refs cached", ref("data.k.routes"), val(`{}`), []put{{ref("data.k.other"), val("5")}}, ref("data.k.other"), val("5")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := getEvalCaches(tc.preRef, tc.preValue)
			defer c.put()
			for _, p := range tc.puts {
				c.base.Put(slices.Clone(p.ref), p.val)
			}
			got := c.base.Get(tc.get)
			if (got == nil) != (tc.want == nil) || (got != nil && got.Compare(tc.want) != 0) {
				t.Errorf("Get(%v) = %v, want %v", tc.get, got, tc.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		c := getEvalCaches(nil, nil)
		defer c.put()
		for i := range 2 * maxBaseEntries {
			c.base.Put(ast.MustParseRef(fmt.Sprintf("data.a%d", i)), ast.IntNumberTerm(i).Value)
		}
		if n := len(c.base.entries); n != maxBaseEntries {
			t.Errorf("%d entries, want at most %d", n, maxBaseEntries)
		}
	})
}

// TestEvalMatchesRego decides inputs with a policy that uses what the engine's own caches and
// evaluation path must get right (a rule referenced twice, functions called twice with the same
// and with other arguments, `with` on input and on data, else chains, the preloaded route data
// and data outside it), through the engine and through rego with OPA's caches, and requires
// the same decisions.
func TestEvalMatchesRego(t *testing.T) {
	t.Parallel()
	b := writePolicy(t, map[string]string{
		"keyauthz/routing.rego": `package keyauthz.routing

built_index := {"size": count(data.keyauthz.routes.table)}
`,
		"keyauthz/routes/data.json": `{"table": [{"path": "/a", "level": 1}, {"path": "/b", "level": 2}]}`,
		"keyauthz/extra/data.json":  `{"bonus": 1}`,
		"keyauthz/decision.rego": `package keyauthz

default decision := {"allow": false, "status": 403, "message": "no", "route": {}, "permissions": "user"}

decision := {"allow": ok, "status": status, "message": msg, "route": {"resource": route.path}, "permissions": "user"} if {
	route.path
	ok := allowed(route)
	status := {true: 200, false: 403}[ok]
	msg := sprintf("%v %v %v %v", [needed(route), needed(route), shadowed, data.keyauthz.routes.index.size])
}

route := r if {
	some r in data.keyauthz.routes.table
	r.path == input.request.path
}

needed(r) := r.level + data.keyauthz.extra.bonus

allowed(r) if count(input.key.scopes) >= needed(r)
else := false

# The same rule and function under with: neither may leak into or out of the frame.
shadowed := x if {
	x := [needed(route), allowed(route)] with input.key.scopes as ["x", "y", "z"]
		with data.keyauthz.extra.bonus as 0
}
`,
	})
	e, err := New(t.Context(), b, Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st := e.state.Load()
	pq, err := rego.New(rego.Query(DecisionQuery), rego.Compiler(st.compiler), rego.Store(st.store), rego.StrictBuiltinErrors(true)).PrepareForEval(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path   string
		scopes []string
	}{{"/a", []string{}}, {"/a", []string{"s"}}, {"/a", []string{"s", "t"}}, {"/b", []string{"s", "t"}}, {"/b", []string{"s", "t", "u"}}, {"/c", []string{"s"}}} {
		t.Run(fmt.Sprint(tc.path, tc.scopes), func(t *testing.T) {
			t.Parallel()
			in := &Input{Request: request("GET", tc.path), Key: keyWith(tc.scopes...)}
			got := e.Decide(t.Context(), in)
			if got.Err != nil {
				t.Fatal(got.Err)
			}
			rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(in.Value()))
			if err != nil || len(rs) != 1 {
				t.Fatalf("rego: %v, %d results", err, len(rs))
			}
			v, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			want, err := decisionFromValue(v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got.Decision); diff != "" {
				t.Errorf("engine (-rego +engine):\n%s", diff)
			}
		})
	}
}

// TestDeadline checks the evaluator's cancellation: not cancelled before the time-out, cancelled
// after it (on one of the next checks) and at once when the context is done.
func TestDeadline(t *testing.T) {
	t.Parallel()
	check := func(d *deadline) bool {
		for range 64 {
			if d.Cancelled() {
				return true
			}
		}
		return false
	}
	var d deadline
	d.start(context.Background(), time.Hour)
	if check(&d) || d.err() != nil {
		t.Errorf("cancelled within the time-out: %v", d.err())
	}
	d.start(context.Background(), -time.Second)
	if !check(&d) || d.err() != context.DeadlineExceeded {
		t.Errorf("not cancelled after the time-out: %v", d.err())
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.start(ctx, time.Hour)
	cancel()
	if !d.Cancelled() || d.err() != context.Canceled {
		t.Errorf("not cancelled with its context: %v", d.err())
	}
}
