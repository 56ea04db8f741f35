package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// TestImportPlaceOS imports a PlaceOS export with `keyauthz import placeos` into a running
// server, on Badger and on etcd, and uses the imported key through the decision endpoint: a
// key made the PlaceOS way works unchanged. It also checks the dry run, the idempotent
// re-import, a conflicting export and a malformed one (nothing written by either).
func TestImportPlaceOS(t *testing.T) {
	backends := []struct {
		name  string
		start func(t *testing.T) *testServer
	}{
		{"badger", func(t *testing.T) *testServer { return startServer(t, "") }},
		{"etcd", func(t *testing.T) *testServer {
			ts := startServer(t, "", "--store", startImportEtcd(t))
			return ts
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ts := be.start(t)
			if ts.AdminKey == "" {
				t.Fatal("no bootstrap key")
			}
			env := map[string]string{"KEYAUTHZ_URL": strings.Replace(ts.URL, "127.0.0.1", "localhost", 1), "KEYAUTHZ_API_KEY": ts.AdminKey}
			dir := t.TempDir()
			id, plaintext, hash := placeOSKey(t)
			export := writeExport(t, dir, "placeos.jsonl", placeOSExport(id, hash))

			decide := func(method, path string) decisionResult {
				t.Helper()
				input := map[string]any{"method": method, "path": path, "host": "placeos.example.com", "headers": map[string]string{"x-api-key": plaintext}}
				r := ts.must(t, call{method: "POST", path: "/v1/data/keyauthz/decision", body: map[string]any{"input": input}})
				if r.status != http.StatusOK {
					t.Fatalf("decision endpoint: %d %s", r.status, r.body)
				}
				return decode[struct {
					Result decisionResult `json:"result"`
				}](t, r.body).Result
			}
			keyCount := func() int {
				t.Helper()
				return len(attachWorld(t, ts).listKeys(t))
			}

			// Dry run: reported, nothing written, the key still unknown.
			out, _, err := runCLI(t, env, "import", "placeos", export, "--dry-run")
			if err != nil || !strings.Contains(out, "dry run: nothing was written") || !strings.Contains(out, "to create  1        1      1") {
				t.Fatalf("dry run: %v\n%s", err, out)
			}
			if d := decide("GET", "/api/engine/v2/systems"); d.Allow || d.Message != "unknown X-API-Key" {
				t.Fatalf("before the import: %+v", d)
			}

			// The import: the PlaceOS key works, with its scopes and no more.
			out, _, err = runCLI(t, env, "import", "placeos", export)
			if err != nil || !strings.HasPrefix(out, "imported\n") {
				t.Fatalf("import: %v\n%s", err, out)
			}
			t.Logf("import output:\n%s", out)
			if d := decide("GET", "/api/engine/v2/systems"); !d.Allow || d.KeyID != id {
				t.Errorf("GET systems with the imported key: %+v, want allowed as %s", d, id)
			}
			if d := decide("POST", "/api/engine/v2/systems"); d.Allow || d.Status != http.StatusForbidden {
				t.Errorf("POST systems (systems.read only): %+v, want 403", d)
			}
			n := keyCount()

			// Re-import: nothing changes.
			out, _, err = runCLI(t, env, "import", "placeos", export, "--output", "json")
			if err != nil {
				t.Fatalf("re-import: %v\n%s", err, out)
			}
			var rep importReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Imported || rep.Unchanged.total() != 3 || rep.Created.total() != 0 {
				t.Errorf("re-import report: %v %+v\n%s", err, rep, out)
			}

			// A conflicting export (the same key id, another secret) and a malformed one:
			// refused with their lines, nothing written.
			_, _, otherHash := placeOSKey(t)
			conflicting := writeExport(t, dir, "changed.jsonl", placeOSExport(id, otherHash)+newKeyRow(t))
			out, _, err = runCLI(t, env, "import", "placeos", conflicting)
			if err == nil || !strings.Contains(err.Error(), "409 Conflict") || !hasRow(out, "3", "key", id, "conflict", "stored with other values of secret") {
				t.Errorf("conflicting import: %v\n%s", err, out)
			}
			malformed := writeExport(t, dir, "bad.csv", "id,name,domain\nauthority-x,X,x.example\nid,authority_id,name,email\nuser-x,authority-x,X\n"+
				"id,name,scopes,secret,user_id,permissions\n"+id+",k,\"[\"\"public\"\"]\",nothex,user-x,0\n")
			_, _, err = runCLI(t, env, "import", "placeos", malformed)
			if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "line 4: user row: has 3 fields, its header has 4") {
				t.Errorf("malformed import: %v", err)
			}
			if got := keyCount(); got != n {
				t.Errorf("%d keys after the refused imports, want %d", got, n)
			}
			if d := decide("GET", "/api/engine/v2/systems"); !d.Allow {
				t.Errorf("the imported key after the refused imports: %+v", d)
			}
		})
	}
}

// hasRow reports whether the table out has a line of exactly these space-separated fields.
func hasRow(out string, fields ...string) bool {
	for line := range strings.Lines(out) {
		if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

// placeOSKey makes a key as PlaceOS does: a 32-hex id, a 43-character base64url secret, the
// stored hex(HMAC-SHA512(key = secret, message = id)).
func placeOSKey(t *testing.T) (id, plaintext, hash string) {
	t.Helper()
	var raw [48]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	id = hex.EncodeToString(raw[:16])
	secret := base64.RawURLEncoding.EncodeToString(raw[16:])
	mac := hmac.New(sha512.New, []byte(secret))
	mac.Write([]byte(id))
	return id, id + "." + secret, hex.EncodeToString(mac.Sum(nil))
}

// placeOSExport is an export as `psql -At -c 'SELECT row_to_json(t) FROM <table> t'` prints
// it: an authority, a support user (with columns keyauthz ignores, secrets among them) and
// the key id with hash.
func placeOSExport(id, hash string) string {
	return `{"id":"authority-PlaceOS1","name":"PlaceOS","description":"","domain":"placeos.example.com","login_url":"/auth/login","logout_url":"/auth/logout","internals":{},"config":{},"created_at":"2023-11-14T22:13:20+00:00","updated_at":"2023-11-14T22:13:20+00:00"}
{"id":"user-Panel1","authority_id":"authority-PlaceOS1","name":"Room panel","email":"panel@placeos.example.com","sys_admin":false,"support":true,"groups":["zone-1"],"password_digest":"$2a$10$notreal","access_token":null,"deleted":false,"created_at":"2023-11-14T22:13:20+00:00","updated_at":"2023-11-14T22:13:20+00:00"}
{"id":"` + id + `","name":"booking panel","description":"","scopes":["systems.read","control"],"permissions":0,"secret":"` + hash + `","user_id":"user-Panel1","authority_id":"authority-PlaceOS1","expires_at":null,"created_at":"2023-11-14T22:13:20+00:00","updated_at":"2023-11-14T22:13:20+00:00"}
`
}

// newKeyRow is one more api_key row of the export's user, fine on its own.
func newKeyRow(t *testing.T) string {
	id, _, hash := placeOSKey(t)
	return `{"id":"` + id + `","name":"second","scopes":["public.read"],"permissions":0,"secret":"` + hash + `","user_id":"user-Panel1"}` + "\n"
}

func writeExport(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startImportEtcd starts a one-member etcd (Debian's etcd-server) on loopback, stopped at the
// end of the test, and returns its --store value. Without the binary the test is skipped,
// except in CI (CI set), where it fails.
func startImportEtcd(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set, so this is a failure): install Debian's etcd-server", bin)
		}
		t.Skipf("%s not found: install Debian's etcd-server to run the etcd half", bin)
	}
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	client, peer := fmt.Sprintf("127.0.0.1:%d", port()), fmt.Sprintf("http://127.0.0.1:%d", port())
	log := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "--name", "m0", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m0="+peer, "--initial-cluster-state", "new", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	// Ready when /health says so (a member with a leader).
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+client+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var h struct{ Health string }
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Health == "true" {
				return "etcd://" + client
			}
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited:\n%s", log)
		case <-ctx.Done():
			t.Fatalf("etcd not ready within 30s:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
