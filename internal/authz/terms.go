package authz

import (
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// inputTerms holds the policy input's key, user and domain parts as Rego values, built once per
// verified key and per domain record and shared by every decision that uses them, so that a
// decision builds only its request part (docs/architecture.md#performance-targets).
//
// Entries are keyed by the identity of the records the store cache hands out (a
// *keys.AuthResult, a *keys.Domain), which it shares, read-only, for as long as they are valid:
// a change to a key, its user or a domain gives new records, hence new entries, so a term is
// never older than the record it was built from. The keys are weak pointers, and an entry goes
// when its record is collected, so the maps hold only records still in use.
type inputTerms struct {
	creds   sync.Map // weak.Pointer[keys.AuthResult] → *credTerms
	domains sync.Map // weak.Pointer[keys.Domain] → *ast.Term
}

// credTerms are the terms of one verified key: the user part, and the key part for each
// source (the source is part of input.key).
type credTerms struct {
	user *ast.Term
	key  [3]atomic.Pointer[ast.Term] // header, query, cookie
}

func sourceIndex(source string) int {
	switch source {
	case SourceHeader:
		return 0
	case SourceQuery:
		return 1
	case SourceCookie:
		return 2
	}
	return -1
}

// cred returns the terms for in.Key and in.User, which are built from auth.
func (c *inputTerms) cred(auth *keys.AuthResult, in *opa.Input) (key, user *ast.Term) {
	wp := weak.Make(auth)
	v, ok := c.creds.Load(wp)
	if !ok {
		ct := &credTerms{user: in.User.Term()}
		var loaded bool
		if v, loaded = c.creds.LoadOrStore(wp, ct); !loaded {
			runtime.AddCleanup(auth, func(wp weak.Pointer[keys.AuthResult]) { c.creds.Delete(wp) }, wp)
		}
	}
	ct := v.(*credTerms)
	i := sourceIndex(in.Key.Source)
	if i < 0 {
		return in.Key.Term(), ct.user
	}
	key = ct.key[i].Load()
	if key == nil {
		key = in.Key.Term()
		ct.key[i].Store(key)
	}
	return key, ct.user
}

// domain returns the term for in.Domain, which is built from d.
func (c *inputTerms) domain(d *keys.Domain, in *opa.Input) *ast.Term {
	wp := weak.Make(d)
	if v, ok := c.domains.Load(wp); ok {
		return v.(*ast.Term)
	}
	t := in.Domain.Term()
	if _, loaded := c.domains.LoadOrStore(wp, t); !loaded {
		runtime.AddCleanup(d, func(wp weak.Pointer[keys.Domain]) { c.domains.Delete(wp) }, wp)
	}
	return t
}
