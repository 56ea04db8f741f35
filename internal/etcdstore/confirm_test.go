package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/authz"
	"github.com/keyauthz/keyauthz/internal/cache"
	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// The caches of a node on etcd follow its view (docs/cluster.md#caches-and-the-watch): these
// tests stop and restart a real etcd member under real stores and Authorizers.

// restart starts m again on its data folder and ports (after stop) and waits until it answers.
func (m *member) restart(t *testing.T) {
	t.Helper()
	cmd := exec.Command(m.cmd.Path, m.cmd.Args[1:]...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	exited := make(chan struct{})
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	m.cmd, m.exited = cmd, exited
	go func() {
		m.waitErr = cmd.Wait()
		close(exited)
	}()
	cli := m.client(t)
	waitFor(t, "etcd answers after the restart", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := cli.Get(ctx, "ready")
		return err == nil
	})
}

// waitFor polls cond until it holds, failing after a generous deadline (a wait, not a
// measurement).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConfirmation: a store's view is confirmed while etcd answers and the watch delivers;
// with the member stopped it is unconfirmed, since a moment no later than the stop, and
// unreachable; once the member is back it is confirmed again, after the OnResync hooks ran.
func TestConfirmation(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/confirm/"), etcdstore.WithHeartbeat(100*time.Millisecond),
		etcdstore.WithRequestTimeout(time.Second))
	var resyncs atomic.Int64
	var confirmedBeforeHooks atomic.Bool
	s.OnResync(func() {
		if s.UnconfirmedSince().IsZero() {
			confirmedBeforeHooks.Store(true)
		}
		resyncs.Add(1)
	})
	if c := s.Confirmation(); !c.Confirmed || !s.UnconfirmedSince().IsZero() || s.Unreachable() != nil {
		t.Fatalf("just opened: %+v, want confirmed", c)
	}
	// Checks pass while etcd is up: the progress requests are answered on the watch stream
	// (etcd 3.4 and later). A check slower than the heartbeat on a loaded machine is a purge,
	// not an error: logged.
	var checks int
	waitFor(t, "a few checks", func() bool { checks++; return checks > 10 })
	if c := s.Confirmation(); !c.Confirmed {
		waitFor(t, "confirmed with etcd up", func() bool { return s.Confirmation().Confirmed })
	}
	t.Logf("resyncs with etcd up throughout: %d", resyncs.Load())

	stopped := time.Now()
	m.stop()
	waitFor(t, "unconfirmed after the stop", func() bool { return !s.Confirmation().Confirmed })
	c := s.Confirmation()
	t.Logf("member stopped: unconfirmed %v after the stop; since %v before it; reason: %v",
		time.Since(stopped).Round(time.Millisecond), stopped.Sub(c.Since).Round(time.Millisecond), c.Reason)
	if c.Since.After(stopped) {
		t.Errorf("unconfirmed since %v, after the stop at %v", c.Since, stopped)
	}
	if c.Reason == nil {
		t.Error("unconfirmed without a reason")
	}
	waitFor(t, "unreachable reported", func() bool { return s.Unreachable() != nil })
	if err := s.Unreachable(); keys.ErrorCode(err) != keys.EUNAVAILABLE {
		t.Errorf("Unreachable() = %v, want an EUNAVAILABLE error", err)
	}

	m.restart(t)
	waitFor(t, "confirmed after the restart", func() bool { return s.Confirmation().Confirmed })
	if n := resyncs.Load(); n < 1 {
		t.Errorf("confirmed again after %d resyncs, want the hooks run first", n)
	}
	if confirmedBeforeHooks.Load() {
		t.Error("a resync hook ran while the view was already reported confirmed")
	}
	if s.Unreachable() != nil {
		t.Errorf("Unreachable() = %v after the restart", s.Unreachable())
	}
}

// TestBootstrapOnce: stores that find one etcd empty at the same moment bootstrap it once:
// one creates the domain, user and key in one transaction, the others create nothing.
func TestBootstrapOnce(t *testing.T) {
	m := startEtcd(t)
	const nodes = 6
	stores := make([]*etcdstore.Store, nodes)
	for i := range stores {
		stores[i] = open(t, m.client(t), etcdstore.WithPrefix("/boot/"))
	}
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		created atomic.Int64
		secret  atomic.Value
	)
	errs := make([]error, nodes)
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d := &keys.Domain{Name: "localhost", Domain: "localhost"}
			u := &keys.User{Name: "admin", Email: "admin@localhost", SysAdmin: true}
			k := &keys.APIKey{Name: "bootstrap", Scopes: []string{"public"}, Permissions: keys.PermissionAdmin}
			p, ok, err := s.Bootstrap(t.Context(), d, u, k)
			errs[i] = err
			if ok {
				created.Add(1)
				secret.Store(string(p))
				if u.AuthorityID != d.ID || k.UserID != u.ID || k.AuthorityID != d.ID {
					errs[i] = fmt.Errorf("records not linked: %+v %+v %+v", d, u, k)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
	if n := created.Load(); n != 1 {
		t.Fatalf("%d nodes bootstrapped, want 1", n)
	}
	ctx := t.Context()
	s := stores[0]
	ds, _ := s.ListDomains(ctx)
	us, _ := s.ListUsers(ctx, "")
	_, nk, _ := s.ListKeys(ctx, keys.KeyFilter{})
	if len(ds) != 1 || len(us) != 1 || nk != 1 {
		t.Fatalf("%d domains, %d users, %d keys; want one of each", len(ds), len(us), nk)
	}
	if _, err := s.Authenticate(ctx, secret.Load().(string), time.Now()); err != nil {
		t.Errorf("the bootstrap key does not verify: %v", err)
	}
	// A later start finds the cluster bootstrapped.
	if _, ok, err := s.Bootstrap(ctx, &keys.Domain{Name: "other", Domain: "other.test"}, &keys.User{Name: "a", Email: "a@b"},
		&keys.APIKey{Name: "k", Permissions: keys.PermissionAdmin}); ok || err != nil {
		t.Errorf("Bootstrap on a bootstrapped store: created %v, err %v", ok, err)
	}
}

// node is an Authorizer over a store, as keyauthz serve builds one.
func node(t *testing.T, s *etcdstore.Store, grace time.Duration) *authz.Authorizer {
	t.Helper()
	b, err := opa.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := opa.New(t.Context(), b, opa.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	o := authz.DefaultOptions()
	o.Cache.StaleGrace = grace
	return authz.New(s, engine, o)
}

func decide(t *testing.T, a *authz.Authorizer, key string) opa.Decision {
	t.Helper()
	return a.Authorize(t.Context(), authz.Request{Method: "GET", URI: "/api/engine/v2/systems/sys-1",
		Host: "acme.example.com", Header: http.Header{"X-Api-Key": {key}}}).Decision
}

// fixture creates a domain, a user and two keys on s, and returns the keys.
func fixture(t *testing.T, s *etcdstore.Store) (one, two string, oneID string) {
	t.Helper()
	ctx := t.Context()
	d := &keys.Domain{Name: "Acme", Domain: "acme.example.com"}
	must(t, s.CreateDomain(ctx, d))
	u := &keys.User{AuthorityID: d.ID, Name: "Panel", Email: "panel@acme.example.com", Groups: []string{"sys-1"}}
	must(t, s.CreateUser(ctx, u))
	k1 := &keys.APIKey{Name: "one", UserID: u.ID, Scopes: []string{"systems.read"}}
	p1, err := s.CreateKey(ctx, k1)
	must(t, err)
	p2, err := s.CreateKey(ctx, &keys.APIKey{Name: "two", UserID: u.ID, Scopes: []string{"systems.read"}})
	must(t, err)
	return string(p1), string(p2), k1.ID
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaleGrace: with etcd stopped, a node with --stale-grace 0 serves no cached allow (503
// deny, "store unavailable"), a node with a grace serves the keys it had verified and refuses
// the others (503), and both answer at once (no request timeout waited). Once etcd is back
// both are confirmed again with empty caches, and allow.
func TestStaleGrace(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/grace/"), etcdstore.WithHeartbeat(100*time.Millisecond))
	strict, lenient := node(t, s, 0), node(t, s, time.Hour)
	one, two, _ := fixture(t, s)
	for _, a := range []*authz.Authorizer{strict, lenient} {
		for range 2 { // the second answer is a cached one
			if d := decide(t, a, one); !d.Allow {
				t.Fatalf("etcd up: %+v, want allow", d)
			}
		}
	}

	m.stop()
	waitFor(t, "etcd unreachable", func() bool { return s.Unreachable() != nil })
	unavailable := opa.Decision{Status: http.StatusServiceUnavailable, Message: authz.MsgUnavailable}
	tests := []struct {
		note string
		a    *authz.Authorizer
		key  string
		want opa.Decision
	}{
		{"grace 0, key verified before", strict, one, unavailable},
		{"grace 0, key never verified", strict, two, unavailable},
		{"grace 1h, key verified before", lenient, one, opa.Decision{Allow: true, Status: http.StatusOK}},
		{"grace 1h, key never verified", lenient, two, unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			start := time.Now()
			d := decide(t, tc.a, tc.key)
			if d.Allow != tc.want.Allow || d.Status != tc.want.Status || (tc.want.Message != "" && d.Message != tc.want.Message) {
				t.Errorf("decision %+v, want %+v", d, tc.want)
			}
			t.Logf("answered in %v", time.Since(start).Round(time.Microsecond))
		})
	}
	if n := strict.StoreCache().Bypassed(); n == 0 {
		t.Error("the grace-0 node's caches were never bypassed")
	}

	m.restart(t)
	waitFor(t, "confirmed again", func() bool { return s.Confirmation().Confirmed })
	for _, a := range []*authz.Authorizer{strict, lenient} {
		if c := a.StoreCache().Cost(); c.Keys+c.UnknownKeys+c.Hosts != 0 {
			t.Errorf("after the resync the store caches hold %+v, want nothing", c)
		}
		if _, n := a.DecisionCache().Cost(); n != 0 {
			t.Errorf("after the resync the decision cache holds %d decisions, want none", n)
		}
		if d := decide(t, a, one); !d.Allow {
			t.Errorf("etcd back: %+v, want allow", d)
		}
	}
}

// TestWriterAndWatcher: two nodes with caches on, each on its own client: a key revoked on
// one is refused by that node on its very next request, and by the other as soon as the
// watch brings the change (the time is logged; test/cluster measures it under load).
func TestWriterAndWatcher(t *testing.T) {
	m := startEtcd(t)
	sa := open(t, m.client(t), etcdstore.WithPrefix("/ww/"))
	sb := open(t, m.client(t), etcdstore.WithPrefix("/ww/"))
	a, b := node(t, sa, 0), node(t, sb, 0)
	one, _, oneID := fixture(t, sa)
	waitFor(t, "the key allowed on b", func() bool { return decide(t, b, one).Allow })
	for _, n := range []*authz.Authorizer{a, b} {
		if d := decide(t, n, one); !d.Allow {
			t.Fatalf("before the revocation: %+v", d)
		}
	}
	start := time.Now()
	must(t, sa.DeleteKey(t.Context(), oneID))
	answered := time.Since(start)
	if d := decide(t, a, one); d.Allow || d.Status != http.StatusUnauthorized {
		t.Fatalf("the writing node after the delete answered: %+v, want 401", d)
	}
	waitFor(t, "the key refused on b", func() bool { return !decide(t, b, one).Allow })
	t.Logf("delete answered in %v; refused by the other node %v after the delete began",
		answered.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))
	if hits, _ := b.StoreCache().Stats(); hits == 0 {
		t.Error("the other node never answered from its cache: caches off?")
	}
}

var _ cache.Confirmer = (*etcdstore.Store)(nil)

// TestAdminFailsFastWhileUnreachable: once the heartbeat has found etcd not answering, reads
// and writes fail at once with ErrUnavailable (a 503) instead of waiting out the request
// timeout: here the timeout is an hour, so a write that waited for etcd would never return
// within the test. When etcd is back, the next heartbeat notices and writes go through again.
func TestAdminFailsFastWhileUnreachable(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/fast/"), etcdstore.WithHeartbeat(100*time.Millisecond),
		etcdstore.WithRequestTimeout(time.Hour))
	ctx := t.Context()
	if err := s.CreateDomain(ctx, &keys.Domain{Name: "Main", Domain: "example.com"}); err != nil {
		t.Fatal(err)
	}
	m.stop()
	waitFor(t, "the heartbeat finds etcd unreachable", func() bool { return s.Unreachable() != nil })
	if err := s.CreateDomain(ctx, &keys.Domain{Name: "Other", Domain: "other.example"}); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("CreateDomain while unreachable: %v, want ErrUnavailable", err)
	}
	if _, err := s.ListDomains(ctx); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("ListDomains while unreachable: %v, want ErrUnavailable", err)
	}
	m.restart(t)
	waitFor(t, "the heartbeat finds etcd back", func() bool { return s.Unreachable() == nil })
	if err := s.CreateDomain(ctx, &keys.Domain{Name: "Other", Domain: "other.example"}); err != nil {
		t.Errorf("CreateDomain once etcd is back: %v", err)
	}
	if ds, err := s.ListDomains(ctx); err != nil || len(ds) != 2 {
		t.Errorf("ListDomains once etcd is back: %d domains, %v; want 2", len(ds), err)
	}
}
