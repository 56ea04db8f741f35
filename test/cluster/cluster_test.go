// Package cluster tests cluster mode (docs/cluster.md) with real processes: an etcd member on
// loopback (Debian's /usr/bin/etcd) and several `keyauthz serve --store etcd://...` nodes,
// each with a data folder of its own, as docs/cluster.md runs them.
//
// The caches are off in cluster mode for now (every decision reads etcd), so a change made on
// one node must be seen by every other node on its very next request.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// etcdBinary is Debian's etcd-server (installed by .ci/run).
const etcdBinary = "/usr/bin/etcd"

var binary string // the keyauthz binary, built once by TestMain

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "keyauthz-cluster-", &binary)) }

// member is one etcd process on loopback; it can be stopped and started again on the same
// ports and data folder.
type member struct {
	dataDir, client, peer string
	log                   *testutil.SyncBuffer
	cmd                   *exec.Cmd
	exited                chan struct{}
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

// startEtcd starts a one-member etcd with free ports and a data folder in t.TempDir. Without
// the binary the test is skipped, except in CI (CI set), where it fails.
func startEtcd(t *testing.T) *member {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set, so this is a failure): install Debian's etcd-server", etcdBinary)
		}
		fmt.Printf("SKIP: %s not found: install Debian's etcd-server (apt-get install etcd-server) to run the cluster test\n", etcdBinary)
		t.Skipf("%s not found: install Debian's etcd-server to run the cluster test", etcdBinary)
	}
	m := &member{
		dataDir: filepath.Join(t.TempDir(), "etcd"),
		client:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		peer:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		log:     &testutil.SyncBuffer{},
	}
	m.start(t)
	t.Cleanup(m.stop)
	return m
}

func (m *member) start(t *testing.T) {
	t.Helper()
	client := "http://" + m.client
	m.cmd = exec.Command(etcdBinary,
		"--name", "m0", "--data-dir", m.dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", "m0="+m.peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn")
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(m.cmd, m.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-m.exited:
			t.Fatalf("etcd exited:\n%s", m.log)
		default:
		}
		resp, err := http.Get(client + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && bytes.Contains(body, []byte(`"health":"true"`)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy after 20s: %v\n%s", err, m.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process (SIGTERM, then SIGKILL) and waits for it.
func (m *member) stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// node is a running `keyauthz serve --store etcd://...`.
type node struct {
	name string
	*testutil.Process
}

// startNodes starts one node per name at once (so that they race to bootstrap), each with a
// data folder of its own, and waits until all listen.
func startNodes(t *testing.T, store string, names ...string) []*node {
	t.Helper()
	nodes := make([]*node, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		n := &node{name: name}
		nodes[i] = n
		dataDir := filepath.Join(t.TempDir(), "data")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.start(t, dataDir, store)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %s: %v\nstderr:\n%s", names[i], err, nodes[i].Stderr)
		}
	}
	return nodes
}

func (n *node) start(t *testing.T, dataDir, store string) error {
	// The command docs/cluster.md gives, with a free port and a temporary data folder.
	p, err := testutil.Start(t, binary, dataDir, "--store", store)
	n.Process = p
	if err != nil {
		return err
	}
	// stderr is copied by exec's goroutine: wait for the log line that follows the
	// "listening on" of stdout, so that the start-up log is all there.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(n.Stderr.String(), `"msg":"listening"`); {
		if time.Now().After(deadline) {
			return fmt.Errorf("no \"listening\" log line within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends a JSON request to n with key and decodes the JSON answer into out; it returns the
// status and the raw body.
func (n *node) call(t *testing.T, method, path, key string, body, out any) (int, []byte) {
	t.Helper()
	rd, err := testutil.Body(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "localhost"
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", n.name, method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s %s: %d %s: %v", n.name, method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, raw
}

type decision struct {
	Allow       bool   `json:"allow"`
	Status      int    `json:"status"`
	Message     string `json:"message"`
	Permissions string `json:"permissions"`
}

// decide asks n for a decision as a gateway would (the OPA Data API): GET path with key.
func (n *node) decide(t *testing.T, key, path string) decision {
	t.Helper()
	var out struct {
		Result decision `json:"result"`
	}
	st, raw := n.call(t, "POST", "/v1/data/keyauthz/decision", "", map[string]any{"input": map[string]any{
		"method": "GET", "path": path, "host": "localhost", "headers": map[string]string{"x-api-key": key},
	}}, &out)
	if st != 200 {
		t.Fatalf("%s decision: %d %s", n.name, st, raw)
	}
	return out.Result
}

// systemPath is a route a key with the control scope may call.
const systemPath = "/api/engine/v2/systems/sys-1/types"

type createdKey struct {
	ID  string `json:"id"`
	Key string `json:"x_api_key"`
}

func createUser(t *testing.T, n *node, admin, domainID, name string, sysAdmin bool) string {
	t.Helper()
	var user struct {
		ID string `json:"id"`
	}
	if st, raw := n.call(t, "POST", "/api/engine/v2/users", admin, map[string]any{
		"authority_id": domainID, "name": name, "email": name + "@localhost", "sys_admin": sysAdmin,
	}, &user); st != 201 {
		t.Fatalf("%s create user: %d %s", n.name, st, raw)
	}
	return user.ID
}

func createKey(t *testing.T, n *node, admin, userID, name, permissions string) createdKey {
	t.Helper()
	var k createdKey
	if st, raw := n.call(t, "POST", "/api/engine/v2/api_keys", admin, map[string]any{
		"name": name, "user_id": userID, "permissions": permissions,
		"scopes": []string{"systems.read", "control"},
	}, &k); st != 201 || k.Key == "" {
		t.Fatalf("%s create key: %d %s", n.name, st, raw)
	}
	return k
}

func TestCluster(t *testing.T) {
	etcd := startEtcd(t)
	store := "etcd://" + etcd.client
	nodes := startNodes(t, store, "A", "B")
	a, b := nodes[0], nodes[1]

	// Bootstrap: exactly one node wrote the key, the other said the cluster was bootstrapped.
	var admin string
	writers := 0
	for _, n := range nodes {
		key, err := os.ReadFile(filepath.Join(n.DataDir, "bootstrap.key"))
		switch {
		case err == nil:
			writers++
			admin = strings.TrimSpace(string(key))
		case !os.IsNotExist(err):
			t.Fatal(err)
		case !strings.Contains(n.Stderr.String(), "already bootstrapped"):
			t.Errorf("node %s wrote no bootstrap key and did not log that the cluster was already bootstrapped:\n%s", n.name, n.Stderr)
		}
		if !strings.Contains(n.Stderr.String(), "caches are OFF") {
			t.Errorf("node %s did not log that its caches are off:\n%s", n.name, n.Stderr)
		}
	}
	if writers != 1 {
		t.Fatalf("%d nodes wrote bootstrap.key, want exactly 1", writers)
	}
	var domains []struct {
		ID string `json:"id"`
	}
	if st, raw := b.call(t, "GET", "/api/engine/v2/domains", admin, nil, &domains); st != 200 || len(domains) != 1 {
		t.Fatalf("domains on B: %d %s (want exactly one: bootstrapped once)", st, raw)
	}
	domainID := domains[0].ID

	t.Run("create on A, allowed on B; delete on B, refused on A", func(t *testing.T) {
		user := createUser(t, a, admin, domainID, "panel", false)
		k := createKey(t, a, admin, user, "panel", "user")
		if d := b.decide(t, k.Key, systemPath); !d.Allow {
			t.Fatalf("key created on A refused on B: %+v", d)
		}
		if st, raw := b.call(t, "DELETE", "/api/engine/v2/api_keys/"+k.ID, admin, nil, nil); st != 202 && st != 200 && st != 204 {
			t.Fatalf("delete on B: %d %s", st, raw)
		}
		if d := a.decide(t, k.Key, systemPath); d.Allow {
			t.Fatalf("key deleted on B still allowed on A's next request: %+v", d)
		}
	})

	t.Run("user demoted on A narrows its key on B", func(t *testing.T) {
		user := createUser(t, a, admin, domainID, "operator", true)
		k := createKey(t, a, admin, user, "operator", "admin")
		if d := b.decide(t, k.Key, systemPath); !d.Allow || d.Permissions != "admin" {
			t.Fatalf("admin key on B before the demotion: %+v", d)
		}
		if st, raw := a.call(t, "PATCH", "/api/engine/v2/users/"+user, admin, map[string]any{"sys_admin": false}, nil); st != 200 {
			t.Fatalf("demote on A: %d %s", st, raw)
		}
		if d := b.decide(t, k.Key, systemPath); d.Permissions != "user" {
			t.Fatalf("key of a user demoted on A not narrowed on B's next request: %+v", d)
		}
	})

	t.Run("propagation", func(t *testing.T) {
		user := createUser(t, a, admin, domainID, "churn", false)
		const changes = 50
		var lags []time.Duration
		for i := range changes {
			writer, reader := a, b
			if i%2 == 1 {
				writer, reader = b, a
			}
			k := createKey(t, writer, admin, user, fmt.Sprintf("churn-%d", i), "user")
			if d := reader.decide(t, k.Key, systemPath); !d.Allow {
				t.Fatalf("change %d: key created on %s refused on %s: %+v", i, writer.name, reader.name, d)
			}
			if st, raw := writer.call(t, "DELETE", "/api/engine/v2/api_keys/"+k.ID, admin, nil, nil); st >= 300 {
				t.Fatalf("change %d: delete on %s: %d %s", i, writer.name, st, raw)
			}
			answered := time.Now()
			polls := 0
			for {
				polls++
				if d := reader.decide(t, k.Key, systemPath); !d.Allow {
					break
				}
				if time.Since(answered) > 10*time.Second {
					t.Fatalf("change %d: key deleted on %s still allowed on %s after 10s", i, writer.name, reader.name)
				}
			}
			lags = append(lags, time.Since(answered))
			if polls != 1 {
				t.Errorf("change %d: %s allowed the key deleted on %s %d times after the delete answered (caches are off: want 0)", i, reader.name, writer.name, polls-1)
			}
		}
		slices.Sort(lags)
		t.Logf("propagation over %d deletes (write answered on one node -> first refusal on the other): p50 %v, p90 %v, max %v",
			len(lags), lags[len(lags)/2], lags[len(lags)*9/10], lags[len(lags)-1])
	})

	t.Run("etcd down: 503, then back: nothing acknowledged lost", func(t *testing.T) {
		user := createUser(t, a, admin, domainID, "writer", false)
		// A writer creates keys on A without pause while etcd stops and starts again; every
		// key it was told was created (201) must be there afterwards.
		var (
			mu    sync.Mutex
			acked []string
			codes = map[int]int{}
		)
		ctx, stopWriting := context.WithCancel(context.Background())
		writing := make(chan struct{})
		go func() {
			defer close(writing)
			for i := 0; ctx.Err() == nil; i++ {
				var k createdKey
				buf, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("w-%d", i), "user_id": user, "permissions": "user", "scopes": []string{"control"}})
				req, _ := http.NewRequest("POST", a.URL+"/api/engine/v2/api_keys", bytes.NewReader(buf))
				req.Host = "localhost"
				req.Header.Set("X-API-Key", admin)
				req.Header.Set("Content-Type", "application/json")
				resp, err := httpClient.Do(req)
				if err != nil {
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 201 && json.Unmarshal(raw, &k) == nil {
					acked = append(acked, k.ID)
				}
				mu.Unlock()
			}
		}()
		held := createKey(t, a, admin, user, "held", "user")
		time.Sleep(300 * time.Millisecond)
		etcd.stop()

		// The caches are off: with etcd down no key can be confirmed, so none is allowed.
		if d := b.decide(t, held.Key, systemPath); d.Allow {
			t.Errorf("decision with etcd down allowed: %+v (want a deny: nothing can be confirmed)", d)
		} else {
			t.Logf("decision with etcd down: status %d %q", d.Status, d.Message)
		}

		st, raw := b.call(t, "POST", "/api/engine/v2/users", admin, map[string]any{
			"authority_id": domainID, "name": "while-down", "email": "down@localhost",
		}, nil)
		var body struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(raw, &body); st != 503 || err != nil || body.Error == "" {
			t.Errorf("admin write with etcd down: %d %s, want 503 with a JSON error; B's log:\n%s", st, raw, b.Stderr)
		} else {
			t.Logf("admin write with etcd down: %d %s", st, raw)
		}
		st, raw = b.call(t, "GET", "/health", "", nil, nil)
		if st != 503 || !bytes.Contains(raw, []byte("etcd")) {
			t.Errorf("/health with etcd down: %d %s, want 503 naming etcd", st, raw)
		} else {
			t.Logf("/health with etcd down: %d %s", st, raw)
		}

		etcd.start(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var user struct {
				ID string `json:"id"`
			}
			st, raw := b.call(t, "POST", "/api/engine/v2/users", admin, map[string]any{
				"authority_id": domainID, "name": "after-restart", "email": "after@localhost",
			}, &user)
			if st == 201 {
				t.Logf("writes resumed %v after etcd was started again", 30*time.Second-time.Until(deadline))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("writes did not resume within 30s of etcd's restart: %d %s", st, raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		stopWriting()
		<-writing
		mu.Lock()
		defer mu.Unlock()
		t.Logf("writer on A: status counts %v, %d acknowledged", codes, len(acked))
		if codes[503] == 0 {
			t.Errorf("the writer saw no 503 while etcd was down: %v", codes)
		}
		for _, id := range acked {
			if st, raw := b.call(t, "GET", "/api/engine/v2/api_keys/"+id, admin, nil, nil); st != 200 {
				t.Errorf("key %s acknowledged by A is not on B after etcd's restart: %d %s", id, st, raw)
			}
		}
		if st, raw := b.call(t, "GET", "/health", "", nil, nil); st != 200 {
			t.Errorf("/health after etcd's restart: %d %s", st, raw)
		}
	})
}
