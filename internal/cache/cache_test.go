package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// countingSource is a real in-memory key store that counts the reads reaching it.
type countingSource struct {
	*badgerstore.Store
	keyReads, hostReads int
}

func (c *countingSource) KeyForAuth(ctx context.Context, id string) (*keys.APIKey, *keys.User, *keys.Domain, error) {
	c.keyReads++
	return c.Store.KeyForAuth(ctx, id)
}

func (c *countingSource) DomainByHost(ctx context.Context, host string) (*keys.Domain, error) {
	c.hostReads++
	return c.Store.DomainByHost(ctx, host)
}

func newSource(t *testing.T) (*countingSource, string, string) {
	t.Helper()
	ctx := t.Context()
	st, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	u := &keys.User{Name: "U", Email: "u@acme.example.com"}
	if err := st.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u.AuthorityID = d.ID
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	k := &keys.APIKey{Name: "k", UserID: u.ID, Scopes: []string{"public"}}
	secret, err := st.CreateKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	return &countingSource{Store: st}, string(secret), k.ID
}

func TestStoreAnswersFromMemoryUntilAChange(t *testing.T) {
	ctx := t.Context()
	src, key, id := newSource(t)
	c := New(src, DefaultOptions())
	now := time.Now()

	for range 3 {
		if _, err := c.Authenticate(ctx, key, now); err != nil {
			t.Fatal(err)
		}
	}
	if src.keyReads != 1 {
		t.Errorf("3 authentications read the store %d times, want 1", src.keyReads)
	}
	// A wrong secret for a cached id is refused without a store read.
	b := []byte(key)
	b[40] = map[bool]byte{true: 'B', false: 'A'}[b[40] == 'A'] // a well-formed, wrong secret
	reads := src.keyReads
	if _, err := c.Authenticate(ctx, string(b), now); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("wrong secret: %v, want ErrUnknownKey", err)
	}
	if src.keyReads != reads {
		t.Errorf("a wrong secret for a cached id read the store")
	}
	// An unknown id reaches the store once, then the negative cache answers.
	unknown := "0123456789abcdef0123456789abcdef." + strings.Repeat("A", 43)
	for range 3 {
		if _, err := c.Authenticate(ctx, unknown, now); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if src.keyReads != 2 {
		t.Errorf("store reads after 3 unknown-key lookups: %d, want 2", src.keyReads)
	}

	// A committed change makes the next lookup read the store again.
	if err := src.DeleteKey(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Authenticate(ctx, key, now); !errors.Is(err, keys.ErrUnknownKey) {
		t.Errorf("deleted key: %v, want ErrUnknownKey", err)
	}

	for range 3 {
		if _, err := c.DomainByHost(ctx, "nowhere.example.com"); keys.ErrorCode(err) != keys.ENOTFOUND {
			t.Fatalf("unknown host: %v", err)
		}
	}
	if src.hostReads != 1 {
		t.Errorf("3 unknown-host lookups read the store %d times, want 1", src.hostReads)
	}
}

func TestDecisions(t *testing.T) {
	if c := NewDecisions(0); c != nil {
		t.Fatalf("NewDecisions(0) = %v, want nil (no caching)", c)
	}
	var none *Decisions
	none.Add(&DecisionKey{}, opa.Decision{Allow: true}, nil)
	if _, ok := none.Get(&DecisionKey{}, time.Now()); ok {
		t.Fatal("a nil cache answered")
	}

	now := time.Unix(1_000, 0)
	allow := opa.Decision{Allow: true, Status: 200}
	exp := int64(1_010)
	k1 := DecisionKey{Method: "GET", Path: "/a", KeyID: "k1"}
	k2 := DecisionKey{Method: "GET", Path: "/a", KeyID: "k2"}
	// Room for two entries of this size and not three.
	c := NewDecisions(2*decisionCost(&k1, &decisionEntry{d: allow}) + 8)
	c.Add(&k1, allow, &exp)
	c.Add(&k2, allow, nil)
	if _, ok := c.Get(&k1, now); !ok {
		t.Error("fresh entry missed")
	}
	if _, ok := c.Get(&k1, time.Unix(exp, 0)); ok {
		t.Error("an entry was served at its key's expires_at")
	}
	if _, ok := c.Get(&DecisionKey{Method: "GET", Path: "/a", KeyID: "k1", Gen: 1}, now); ok {
		t.Error("an entry of another store generation was served")
	}
	c.Add(&DecisionKey{Method: "GET", Path: "/b"}, allow, nil)
	c.Add(&DecisionKey{Method: "GET", Path: "/c"}, allow, nil)
	if _, ok := c.Get(&k2, now); ok {
		t.Error("the cache holds more entries than its bound in bytes allows")
	}
	if h, m := c.Stats(); h != 1 || m != 3 {
		t.Errorf("stats: %d hits, %d misses; want 1, 3", h, m)
	}
}
