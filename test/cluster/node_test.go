package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// node is a running `keyauthz serve --store etcd://...` with a data folder of its own.
type node struct {
	name    string
	dataDir string
	args    []string // the flags after --addr, --data-dir and --eval-timeout
	*testutil.Process
}

// startNodes starts one node per spec at once (so that they race to bootstrap) and waits until
// all listen.
func startNodes(t *testing.T, specs ...*node) {
	t.Helper()
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, n := range specs {
		n.dataDir = filepath.Join(t.TempDir(), "data-"+strings.ToLower(n.name))
		wg.Go(func() { errs[i] = n.start(t) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %s: %v\nstderr:\n%s", specs[i].name, err, specs[i].Stderr)
		}
	}
}

// start runs the node (again, after a kill: same data folder and flags, a new port).
func (n *node) start(t *testing.T) error {
	p, err := testutil.Start(t, binary, n.dataDir, n.args...)
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

var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute},
}

// do sends a JSON request to n with key and returns the status and the raw body; it never
// fails the test, so that goroutines can use it.
func (n *node) do(method, path, key string, body any) (int, []byte, error) {
	rd, err := testutil.Body(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Host = "localhost"
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s %s: %w", n.name, method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// unavailable counts the answers "503 store unavailable" that the helpers below waited out:
// etcd, or a node's check of it, too slow for a moment on a loaded machine. It is reported;
// the tests that break etcd on purpose look at their 503s themselves.
var unavailable atomic.Int64

// settleLimit is how long a helper repeats a request that answers 503.
const settleLimit = 30 * time.Second

// call is do for the test's goroutine: a 503 is asked again (up to settleLimit), a transport
// error fails the test, and a 2xx answer is decoded into out.
func (n *node) call(t *testing.T, method, path, key string, body, out any) (int, []byte) {
	t.Helper()
	st, raw, err := n.do(method, path, key, body)
	for deadline := time.Now().Add(settleLimit); err == nil && st == 503 && time.Now().Before(deadline); {
		unavailable.Add(1)
		time.Sleep(50 * time.Millisecond)
		st, raw, err = n.do(method, path, key, body)
	}
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(raw) > 0 && st < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s %s: %d %s: %v", n.name, method, path, st, raw, err)
		}
	}
	return st, raw
}

type decision struct {
	Allow       bool   `json:"allow"`
	Status      int    `json:"status"`
	Message     string `json:"message"`
	Permissions string `json:"permissions"`
}

func (d decision) String() string {
	if d.Allow {
		return "allow (" + d.Permissions + ")"
	}
	return fmt.Sprintf("deny %d %q", d.Status, d.Message)
}

// systemPath is a route a key with the control scope may call.
const systemPath = "/api/engine/v2/systems/sys-1/types"

// tryDecide asks n for a decision as a gateway would (the OPA Data API): GET systemPath with
// key.
func (n *node) tryDecide(key string) (decision, error) {
	var out struct {
		Result *decision `json:"result"`
	}
	st, raw, err := n.do("POST", "/v1/data/keyauthz/decision", "", map[string]any{"input": map[string]any{
		"method": "GET", "path": systemPath, "host": "localhost", "headers": map[string]string{"x-api-key": key},
	}})
	if err != nil {
		return decision{}, err
	}
	if st != 200 || json.Unmarshal(raw, &out) != nil || out.Result == nil {
		return decision{}, fmt.Errorf("%s decision: %d %s", n.name, st, raw)
	}
	return *out.Result, nil
}

// decide is tryDecide for the test's goroutine: a 503 deny (store unavailable) is asked again
// (up to settleLimit), and an error fails the test.
func (n *node) decide(t *testing.T, key string) decision {
	t.Helper()
	d, err := n.tryDecide(key)
	for deadline := time.Now().Add(settleLimit); err == nil && d.Status == 503 && time.Now().Before(deadline); {
		unavailable.Add(1)
		time.Sleep(50 * time.Millisecond)
		d, err = n.tryDecide(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

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

func keyBody(userID, name, permissions string) map[string]any {
	return map[string]any{"name": name, "user_id": userID, "permissions": permissions,
		"scopes": []string{"systems.read", "control"}}
}

// tryCreateKey creates a key on n: the status and, on 201, the key.
func (n *node) tryCreateKey(admin, userID, name, permissions string) (int, createdKey, []byte, error) {
	var k createdKey
	st, raw, err := n.do("POST", "/api/engine/v2/api_keys", admin, keyBody(userID, name, permissions))
	if err == nil && st == 201 {
		if err = json.Unmarshal(raw, &k); err == nil && (k.ID == "" || k.Key == "") {
			err = fmt.Errorf("201 without id or key: %s", raw)
		}
	}
	return st, k, raw, err
}

func createKey(t *testing.T, n *node, admin, userID, name, permissions string) createdKey {
	t.Helper()
	var k createdKey
	if st, raw := n.call(t, "POST", "/api/engine/v2/api_keys", admin, keyBody(userID, name, permissions), &k); st != 201 || k.ID == "" || k.Key == "" {
		t.Fatalf("%s create key: %d %s", n.name, st, raw)
	}
	return k
}

// deleteKey deletes key id on n. After a 503 the delete may have been applied all the same (the
// answer was lost, not the write), so a 404 on the next attempt is a success.
func deleteKey(t *testing.T, n *node, admin, id string) {
	t.Helper()
	retried := false
	for deadline := time.Now().Add(settleLimit); ; {
		st, raw, err := n.do("DELETE", "/api/engine/v2/api_keys/"+id, admin, nil)
		switch {
		case err != nil:
			t.Fatal(err)
		case st < 300 || retried && st == 404:
			return
		case st == 503 && time.Now().Before(deadline):
			unavailable.Add(1)
			retried = true
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("%s delete key %s: %d %s", n.name, id, st, raw)
		}
	}
}

func setSysAdmin(t *testing.T, n *node, admin, userID string, sysAdmin bool) {
	t.Helper()
	if st, raw := n.call(t, "PATCH", "/api/engine/v2/users/"+userID, admin, map[string]any{"sys_admin": sysAdmin}, nil); st != 200 {
		t.Fatalf("%s set sys_admin=%v: %d %s", n.name, sysAdmin, st, raw)
	}
}

// cacheHits reads n's /metrics: the hits of each cache (keyauthz_cache_hits_total by cache).
func (n *node) cacheHits(t *testing.T) map[string]float64 {
	t.Helper()
	st, raw := n.call(t, "GET", "/metrics", "", nil, nil)
	if st != 200 {
		t.Fatalf("%s /metrics: %d", n.name, st)
	}
	out := map[string]float64{}
	for line := range bytes.Lines(raw) {
		s := strings.TrimSpace(string(line))
		rest, ok := strings.CutPrefix(s, `keyauthz_cache_hits_total{cache="`)
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
