package cache

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// The policy input's key, user and domain parts (docs/policy-contract.md#input) are built here,
// once, when a cache entry is filled, both as Go structs and as Rego values (opa.Input.SetTerms),
// and kept in the entry: a request answered from the cache builds only its request part, with
// no lookup of its own. A change to a key, its user or a domain moves a version and the entry is
// refilled, so the parts are never older than the records they were built from.

// keySources are the credential sources (input.key.source) authz presents a key from
// (authz.SourceHeader, SourceQuery, SourceCookie): the key part is kept for each, and its term
// for the first (the header, the source of nearly every request); a key presented from another
// source has its term built per request, so that an entry keeps one key term (an AST object
// costs several hundred bytes).
var keySources = [...]string{"header", "query", "cookie"}

// Cred is a verified key: its records, shared read-only, and the policy input's key part (one
// per source) and user part built from them.
type Cred struct {
	*keys.AuthResult
	user      opa.User
	userTerm  *ast.Term
	key       [len(keySources)]opa.Key
	headerKey *ast.Term // the term of key[0]
}

func newCred(res *keys.AuthResult) *Cred {
	c := &Cred{AuthResult: res}
	u := res.User
	c.user = opa.User{
		ID:          u.ID,
		AuthorityID: u.AuthorityID,
		Name:        u.Name,
		Email:       u.Email,
		SysAdmin:    u.SysAdmin,
		Support:     u.Support,
		Groups:      u.Groups,
	}
	c.userTerm = c.user.Term()
	for i, source := range keySources {
		c.key[i] = opa.Key{
			ID:          res.Key.ID,
			AuthorityID: res.Key.AuthorityID,
			Scopes:      res.Key.Scopes,
			Permissions: string(res.Key.Permissions),
			Source:      source,
			// Shared with the cached key record, read-only like it; nil when empty, as the
			// input leaves an empty allow-list out (docs/limits.md).
			AllowedCIDRs: nonEmpty(res.Key.AllowedCIDRs),
		}
	}
	c.headerKey = c.key[0].Term()
	return c
}

// SetInput sets in.Key (presented from source) and in.User, and their terms. The parts are
// shared with every other request of the key and must not be modified. A source other than
// the three authz knows gets its key part built for this call.
func (c *Cred) SetInput(in *opa.Input, source string) {
	in.User = &c.user
	in.SetUserTerm(c.userTerm)
	for i, s := range keySources {
		if s == source {
			in.Key = &c.key[i]
			if i == 0 {
				in.SetKeyTerm(c.headerKey)
			} else {
				in.SetKeyTerm(nil)
			}
			return
		}
	}
	k := c.key[0]
	k.Source = source
	in.Key = &k
	in.SetKeyTerm(nil)
}

// HostDomain is the domain of a host: its record, shared read-only, and the policy input's
// domain part built from it.
type HostDomain struct {
	*keys.Domain
	input opa.Domain
	term  *ast.Term
}

func newHostDomain(d *keys.Domain) *HostDomain {
	if d == nil {
		return nil
	}
	h := &HostDomain{Domain: d, input: opa.Domain{ID: d.ID, Name: d.Name, Domain: d.Domain}}
	h.term = h.input.Term()
	return h
}

// SetInput sets in.Domain and its term. The part is shared with every other request of the
// host and must not be modified.
func (h *HostDomain) SetInput(in *opa.Input) {
	in.Domain = &h.input
	in.SetDomainTerm(h.term)
}

// nonEmpty is list, or nil when it is empty.
func nonEmpty(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return list
}
