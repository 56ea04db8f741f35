package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/keys/storetest"
)

// etcdBinary is Debian's etcd-server (installed by .ci/run).
const etcdBinary = "/usr/bin/etcd"

// member is one etcd process on loopback.
type member struct {
	cmd      *exec.Cmd
	endpoint string
	log      *syncBuffer
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // set before exited is closed
}

// syncBuffer is the process's output, written by exec's copying goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// stop kills the process and waits for it.
func (m *member) stop() {
	m.cmd.Process.Kill()
	<-m.exited
}

// startEtcd starts a one-member etcd on loopback with free ports and a data folder in
// t.TempDir, stopped at the end of the test. Without the binary the test is skipped, except
// in CI (CI set), where it fails.
func startEtcd(t *testing.T) *member {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set, so this is a failure): install Debian's etcd-server", etcdBinary)
		}
		t.Skipf("%s not found: install Debian's etcd-server (apt-get install etcd-server) to run the etcd store tests", etcdBinary)
	}
	for attempt := 1; ; attempt++ {
		m, err := tryStart(t)
		if err == nil {
			return m
		}
		if attempt == 3 {
			t.Fatalf("start etcd: %v", err)
		}
		t.Logf("start etcd (attempt %d): %v", attempt, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tryStart(t *testing.T) (*member, error) {
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	dir := filepath.Join(t.TempDir(), "etcd")
	m := &member{endpoint: client, log: &syncBuffer{}, exited: make(chan struct{})}
	m.cmd = exec.Command(etcdBinary,
		"--name", "m0", "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m0="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn")
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(m.stop)
	cli := m.client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("etcd exited: %v\n%s", m.waitErr, m.log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcd not ready after 20s: %v\n%s", err, m.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client returns a new client of m (each is a connection of its own, as another process's
// would be), closed at the end of the test.
func (m *member) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func open(t *testing.T, cli *clientv3.Client, opts ...etcdstore.Option) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(t.Context(), cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestEtcdConformance runs the store conformance suite against the etcd store, every subtest
// under a prefix of its own on one etcd member.
func TestEtcdConformance(t *testing.T) {
	m := startEtcd(t)
	cli := m.client(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) keys.Service {
		return open(t, cli, etcdstore.WithPrefix(fmt.Sprintf("/conformance/%d/", n.Add(1))))
	})
}

// recorder collects the changes a store's hooks report, with the time each arrived.
type recorder struct {
	mu   sync.Mutex
	seen []seen
	kick chan struct{}
}

type seen struct {
	c  keys.Change
	at time.Time
}

func newRecorder(s *etcdstore.Store) *recorder {
	r := &recorder{kick: make(chan struct{}, 1)}
	s.OnChange(func(c keys.Change) {
		r.mu.Lock()
		r.seen = append(r.seen, seen{c, time.Now()})
		r.mu.Unlock()
		select {
		case r.kick <- struct{}{}:
		default:
		}
	})
	return r
}

func (r *recorder) count(c keys.Change) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seen {
		if s.c == c {
			n++
		}
	}
	return n
}

// wait returns when every change of want has been seen, with the time the last arrived.
func (r *recorder) wait(t *testing.T, deadline time.Duration, want ...keys.Change) time.Time {
	t.Helper()
	timeout := time.After(deadline)
	for {
		r.mu.Lock()
		var last time.Time
		missing := slices.ContainsFunc(want, func(c keys.Change) bool {
			i := slices.IndexFunc(r.seen, func(s seen) bool { return s.c == c })
			if i >= 0 && r.seen[i].at.After(last) {
				last = r.seen[i].at
			}
			return i < 0
		})
		r.mu.Unlock()
		if !missing {
			return last
		}
		select {
		case <-r.kick:
		case <-timeout:
			t.Fatalf("changes %v not all seen within %v; seen %v", want, deadline, r.seen)
		}
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.seen = nil
	r.mu.Unlock()
}

// TestChangesReachOtherStores: two stores on one etcd (each with its own client, as two
// nodes): a create, a demotion and deletes on one reach the other's OnChange through the
// watch. Latencies are logged; the only timed assertion is a generous deadline (docs/cluster.md
// asks for 1 s, which the cluster test measures). The writer's own hooks report each change
// exactly once (the watch does not report them again).
func TestChangesReachOtherStores(t *testing.T) {
	m := startEtcd(t)
	a := open(t, m.client(t), etcdstore.WithPrefix("/two/"))
	b := open(t, m.client(t), etcdstore.WithPrefix("/two/"))
	ra, rb := newRecorder(a), newRecorder(b)
	ctx := t.Context()
	const deadline = 10 * time.Second
	var worst time.Duration
	// step runs write on the store whose recorder is w and waits for the other's, r.
	step := func(what string, w, r *recorder, write func() []keys.Change) {
		t.Helper()
		w.reset()
		r.reset()
		start := time.Now()
		want := write()
		returned := time.Now()
		for _, c := range want {
			if n := w.count(c); n != 1 {
				t.Errorf("%s: the writing store reported %v %d times before returning, want once", what, c, n)
			}
		}
		last := r.wait(t, deadline, want...)
		lat := last.Sub(start)
		worst = max(worst, lat)
		t.Logf("%s: seen by the other store %v after the write began (write took %v)", what, lat.Round(time.Microsecond), returned.Sub(start).Round(time.Microsecond))
		if lat > time.Second {
			t.Logf("%s: WARNING: propagation over 1 s", what)
		}
	}
	var (
		d  *keys.Domain
		u  *keys.User
		k1 *keys.APIKey
		k2 *keys.APIKey
	)
	step("create domain", ra, rb, func() []keys.Change {
		d = &keys.Domain{Name: "Main", Domain: "example.com"}
		if err := a.CreateDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
		return []keys.Change{{Kind: keys.KindDomain, ID: d.ID}}
	})
	step("create user", ra, rb, func() []keys.Change {
		u = &keys.User{AuthorityID: d.ID, Name: "Admin", Email: "admin@example.com", SysAdmin: true}
		if err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return []keys.Change{{Kind: keys.KindUser, ID: u.ID}}
	})
	step("create keys", ra, rb, func() []keys.Change {
		k1, k2 = &keys.APIKey{Name: "one", UserID: u.ID, Permissions: keys.PermissionAdmin}, &keys.APIKey{Name: "two", UserID: u.ID}
		for _, k := range []*keys.APIKey{k1, k2} {
			if _, err := a.CreateKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		return []keys.Change{{Kind: keys.KindKey, ID: k1.ID}, {Kind: keys.KindKey, ID: k2.ID}}
	})
	step("demote user (written on the other store)", rb, ra, func() []keys.Change {
		if _, err := b.ModifyUser(ctx, u.ID, func(cur *keys.User) error { cur.SysAdmin = false; return nil }); err != nil {
			t.Fatal(err)
		}
		return []keys.Change{{Kind: keys.KindUser, ID: u.ID}}
	})
	step("delete key", ra, rb, func() []keys.Change {
		if err := a.DeleteKey(ctx, k1.ID); err != nil {
			t.Fatal(err)
		}
		return []keys.Change{{Kind: keys.KindKey, ID: k1.ID}}
	})
	step("delete domain (cascade)", ra, rb, func() []keys.Change {
		if err := a.DeleteDomain(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		return []keys.Change{{Kind: keys.KindDomain, ID: d.ID}, {Kind: keys.KindUser, ID: u.ID}, {Kind: keys.KindKey, ID: k2.ID}}
	})
	t.Logf("worst propagation: %v", worst.Round(time.Microsecond))
}

// TestRecordUseIsNotAChange: last_used_at written on one store calls no hook on another.
func TestRecordUseIsNotAChange(t *testing.T) {
	m := startEtcd(t)
	a := open(t, m.client(t), etcdstore.WithPrefix("/use/"))
	b := open(t, m.client(t), etcdstore.WithPrefix("/use/"))
	rb := newRecorder(b)
	ctx := t.Context()
	d := &keys.Domain{Name: "Main", Domain: "example.com"}
	if err := a.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "U", Email: "u@example.com"}
	if err := a.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	k := &keys.APIKey{Name: "k", UserID: u.ID}
	if _, err := a.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	// b has seen the creates before the use is recorded.
	rb.wait(t, 10*time.Second, keys.Change{Kind: keys.KindKey, ID: k.ID})
	rb.reset()
	if err := a.RecordUse(ctx, map[string]int64{k.ID: time.Now().Unix()}); err != nil {
		t.Fatal(err)
	}
	// A later real change, to know the watch has passed the RecordUse's revision.
	if _, err := a.ModifyDomain(ctx, d.ID, func(cur *keys.Domain) error { cur.Description = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	rb.wait(t, 10*time.Second, keys.Change{Kind: keys.KindDomain, ID: d.ID})
	if n := rb.count(keys.Change{Kind: keys.KindKey, ID: k.ID}); n != 0 {
		t.Errorf("a last_used_at update was reported to the other store %d times", n)
	}
	got, err := b.GetKey(ctx, k.ID)
	if err != nil || got.LastUsedAt == nil {
		t.Errorf("GetKey after RecordUse: %v, %v", got, err)
	}
}

// TestUnreachable: with etcd gone, a write fails within the request timeout with
// ErrUnavailable (for a 503), not a hang or a validation error.
func TestUnreachable(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/gone/"), etcdstore.WithRequestTimeout(time.Second))
	m.stop()
	start := time.Now()
	err := s.CreateDomain(t.Context(), &keys.Domain{Name: "Main", Domain: "example.com"})
	took := time.Since(start)
	if !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("CreateDomain with etcd down: %v, want ErrUnavailable", err)
	}
	if took > 5*time.Second {
		t.Errorf("CreateDomain with etcd down took %v", took)
	}
	t.Logf("write with etcd down: %v after %v", err, took.Round(time.Millisecond))
	if err := s.Ping(t.Context()); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("Ping with etcd down: %v, want ErrUnavailable", err)
	}
}

// TestCascadeBeyondTxnLimit: a user whose keys are too many for one etcd transaction is not
// deleted in part: the delete is ECONFLICT with a message saying why, and nothing changes.
func TestCascadeBeyondTxnLimit(t *testing.T) {
	m := startEtcd(t)
	s := open(t, m.client(t), etcdstore.WithPrefix("/big/"), etcdstore.WithMaxTxnOps(16))
	ctx := t.Context()
	d := &keys.Domain{Name: "Main", Domain: "example.com"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "U", Email: "u@example.com"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := s.CreateKey(ctx, &keys.APIKey{Name: fmt.Sprint("k", i), UserID: u.ID}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.DeleteUser(ctx, u.ID)
	if keys.ErrorCode(err) != keys.ECONFLICT {
		t.Fatalf("DeleteUser beyond the limit: %v, want ECONFLICT", err)
	}
	t.Logf("DeleteUser beyond the limit: %v", err)
	if _, n, _ := s.ListKeys(ctx, keys.KeyFilter{}); n != 10 {
		t.Errorf("%d keys left, want all 10", n)
	}
	if _, err := s.GetUser(ctx, u.ID); err != nil {
		t.Errorf("GetUser after the refused delete: %v", err)
	}
}
