// Package storetest is the conformance suite of keys.Service: every backend (Badger today, etcd
// in cluster mode) runs it to show that it keeps the store's contract, as documented on
// keys.Service, through the interface alone.
package storetest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Open returns a new, empty store for one subtest, and arranges (with t.Cleanup) to close it.
// The store must use the real clock: the suite sets expiry times relative to time.Now.
type Open func(t *testing.T) keys.Service

// Run runs the whole suite against stores made by open, each subtest on a store of its own.
// Subtests are grouped by concern: Domains, Users, Keys (every operation, its validation and
// its error codes), Uniqueness (hosts, key names per domain, also under concurrency),
// Pagination, Cascades (deletes and the Authenticate after them), Concurrency (concurrent
// patches of different fields lose nothing; a write that keeps losing is ECONFLICT),
// Authenticate, Import (ids and hashes kept, all or nothing, idempotent) and Rotation.
//
// One subtest (Concurrency/ConflictIsRetriedThenECONFLICT) writes to a record from inside a
// ModifyDomain of it, which a store with optimistic concurrency (Badger, etcd) allows; a store
// that locked records for the length of a change would deadlock there.
func Run(t *testing.T, open Open) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Domains", domainTests},
		{"Users", userTests},
		{"Keys", keyTests},
		{"Uniqueness", uniquenessTests},
		{"Pagination", paginationTests},
		{"Cascades", cascadeTests},
		{"Concurrency", concurrencyTests},
		{"Authenticate", authenticateTests},
		{"Import", importTests},
		{"Rotation", rotationTests},
		{"Limits", limitTests},
		{"Audit", auditTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tt := range g.tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
			}
		})
	}
}

// test is one subtest: a name and what it does with a new, empty store.
type test struct {
	name string
	run  func(t *testing.T, s keys.Service)
}

// --- fixtures ---

func mustDomain(t *testing.T, s keys.Service, name, host string) *keys.Domain {
	t.Helper()
	d := &keys.Domain{Name: name, Domain: host}
	if err := s.CreateDomain(t.Context(), d); err != nil {
		t.Fatalf("CreateDomain(%s): %v", host, err)
	}
	return d
}

func mustUser(t *testing.T, s keys.Service, d *keys.Domain, name string, admin bool) *keys.User {
	t.Helper()
	u := &keys.User{AuthorityID: d.ID, Name: name, Email: strings.ToLower(name) + "@" + d.Domain, SysAdmin: admin}
	if err := s.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// mustKey creates a key of user u named name, edited first by each of with; it returns the
// stored key and its plaintext.
func mustKey(t *testing.T, s keys.Service, u *keys.User, name string, with ...func(*keys.APIKey)) (*keys.APIKey, string) {
	t.Helper()
	k := &keys.APIKey{Name: name, UserID: u.ID}
	for _, f := range with {
		f(k)
	}
	pt, err := s.CreateKey(t.Context(), k)
	if err != nil {
		t.Fatalf("CreateKey(%s): %v", name, err)
	}
	return k, string(pt)
}

// site is one domain with a plain user and an admin user.
type site struct {
	domain      *keys.Domain
	user, admin *keys.User
}

func mustSite(t *testing.T, s keys.Service, host string) site {
	t.Helper()
	d := mustDomain(t, s, "Site "+host, host)
	return site{domain: d, user: mustUser(t, s, d, "Plain", false), admin: mustUser(t, s, d, "Admin", true)}
}

func ptr[T any](v T) *T { return &v }

// --- assertions ---

// failure is an expected validation failure; an empty reason matches any reason.
type failure struct{ field, reason string }

// wantErr fails t unless err has the given code and, for EUNPROCESSABLE, exactly the given
// failures (in any order).
func wantErr(t *testing.T, what string, err error, code string, failures ...failure) {
	t.Helper()
	if got := keys.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
		return
	}
	if code != keys.EUNPROCESSABLE {
		return
	}
	var got, want []failure
	for _, f := range keys.ErrorFailures(err) {
		got = append(got, failure{f.Field, f.Reason})
	}
	for _, f := range failures {
		if f.reason == "" {
			// Take the reason from the matching field so that only the field is compared.
			for _, g := range got {
				if g.field == f.field {
					f.reason = g.reason
					break
				}
			}
		}
		want = append(want, f)
	}
	less := func(a, b failure) bool { return a.field+"\x00"+a.reason < b.field+"\x00"+b.reason }
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(failure{}), cmpopts.SortSlices(less)); diff != "" {
		t.Errorf("%s: failures (-want +got):\n%s", what, diff)
	}
}

func mustNot(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// snapshot is everything a store holds, as the interface shows it, for "nothing changed"
// checks.
type snapshot struct {
	Domains []*keys.Domain
	Users   []*keys.User
	Keys    []*keys.APIKey
	Counts  [3]int
}

func snap(t *testing.T, s keys.Service) snapshot {
	t.Helper()
	ctx := t.Context()
	var sn snapshot
	var err error
	sn.Domains, err = s.ListDomains(ctx)
	mustNot(t, "ListDomains", err)
	sn.Users, err = s.ListUsers(ctx, "")
	mustNot(t, "ListUsers", err)
	sn.Keys, _, err = s.ListKeys(ctx, keys.KeyFilter{})
	mustNot(t, "ListKeys", err)
	sn.Counts[0], sn.Counts[1], sn.Counts[2] = s.Counts(ctx)
	return sn
}

func unchanged(t *testing.T, s keys.Service, before snapshot) {
	t.Helper()
	if diff := cmp.Diff(before, snap(t, s)); diff != "" {
		t.Errorf("store changed (-before +after):\n%s", diff)
	}
}

func wantCounts(t *testing.T, s keys.Service, domains, users, apiKeys int) {
	t.Helper()
	d, u, k := s.Counts(t.Context())
	if d != domains || u != users || k != apiKeys {
		t.Errorf("Counts = %d domains, %d users, %d keys; want %d, %d, %d", d, u, k, domains, users, apiKeys)
	}
}

// gone checks that the key id and its plaintext are no longer known: GetKey and KeyForAuth
// say ENOTFOUND and Authenticate refuses it as unknown.
func gone(t *testing.T, s keys.Service, id, plaintext string) {
	t.Helper()
	ctx := t.Context()
	_, err := s.GetKey(ctx, id)
	wantErr(t, "GetKey of a deleted key", err, keys.ENOTFOUND)
	_, _, _, err = s.KeyForAuth(ctx, id)
	wantErr(t, "KeyForAuth of a deleted key", err, keys.ENOTFOUND)
	if _, err := s.Authenticate(ctx, plaintext, time.Now()); err != keys.ErrUnknownKey {
		t.Errorf("Authenticate of a deleted key: %v, want ErrUnknownKey", err)
	}
}

// authenticates checks that plaintext authenticates now as the key id.
func authenticates(t *testing.T, s keys.Service, id, plaintext string) {
	t.Helper()
	res, err := s.Authenticate(t.Context(), plaintext, time.Now())
	if err != nil {
		t.Errorf("Authenticate(%s): %v", id, err)
		return
	}
	if res.Key.ID != id {
		t.Errorf("Authenticate(%s) = key %s", id, res.Key.ID)
	}
}

// --- concurrency helpers ---

// race runs fn(i) for i in [0, n) on n goroutines released together, and waits for them.
func race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// retryConflicts calls write until it returns anything but ECONFLICT, which Service documents
// as "try again"; it gives up (returning the ECONFLICT) after many attempts.
func retryConflicts(write func() error) error {
	var err error
	for range 1000 {
		if err = write(); keys.ErrorCode(err) != keys.ECONFLICT {
			return err
		}
	}
	return err
}

func ids[T any](list []T, id func(T) string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		out = append(out, id(v))
	}
	return out
}

func keyIDs(list []*keys.APIKey) []string {
	return ids(list, func(k *keys.APIKey) string { return k.ID })
}

// sortChanges compares lists of changes in any order.
var sortChanges = cmpopts.SortSlices(func(a, b keys.Change) bool { return a.Kind+"/"+a.ID < b.Kind+"/"+b.ID })
