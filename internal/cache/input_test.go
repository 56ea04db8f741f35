package cache

import (
	"reflect"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/opa"
)

// TestSetInputTerms checks that an input given the parts a cache entry keeps (Cred.SetInput,
// HostDomain.SetInput), for each source and once more from the cache, is the same Rego value as
// one built from scratch out of the same records.
func TestSetInputTerms(t *testing.T) {
	ctx := t.Context()
	src, key, _ := newSource(t)
	s := New(src, DefaultOptions())
	for _, source := range []string{"header", "query", "cookie", "other", "header"} {
		var deps Deps
		c, err := s.AuthenticateCred(ctx, key, time.Now(), &deps)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.HostDomainDeps(ctx, c.Domain.Domain, &deps)
		if err != nil {
			t.Fatal(err)
		}
		in := opa.Input{Request: opa.Request{Method: "GET", Path: "/a", Host: c.Domain.Domain, Protocol: "http"}}
		c.SetInput(&in, source)
		h.SetInput(&in)
		k, u, d := c.Key, c.User, c.Domain
		fresh := opa.Input{
			Request: in.Request,
			Domain:  &opa.Domain{ID: d.ID, Name: d.Name, Domain: d.Domain},
			Key:     &opa.Key{ID: k.ID, AuthorityID: k.AuthorityID, Scopes: k.Scopes, Permissions: string(k.Permissions), Source: source},
			User: &opa.User{ID: u.ID, AuthorityID: u.AuthorityID, Name: u.Name, Email: u.Email,
				SysAdmin: u.SysAdmin, Support: u.Support, Groups: u.Groups},
		}
		if got, want := in.Value(), fresh.Value(); got.Compare(want) != 0 {
			t.Errorf("source %s: with the entry's parts %v, want %v", source, got, want)
		}
		if !reflect.DeepEqual(in.Key, fresh.Key) || !reflect.DeepEqual(in.User, fresh.User) || *in.Domain != *fresh.Domain {
			t.Errorf("source %s: input structs %+v %+v %+v differ from the records", source, in.Key, in.User, in.Domain)
		}
	}
}
