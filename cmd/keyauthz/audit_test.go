package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// End-to-end tests of the audit log (docs/audit.md): its records survive a kill -9 together
// with their changes, the CLI lists them, and serve's retention flags prune them.

// ack is an admin write the server acknowledged: what it created and the request's id.
type ack struct {
	kind, id, requestID string
	plaintext           string // a key's, shown once
}

// TestAuditSurvivesKillDashNine kills keyauthz with SIGKILL while four clients create users
// and keys, then opens the Badger folder: every acknowledged write has its record, every
// record's change is stored and every stored change has exactly one record (the record and
// the change commit together or not at all), and no stored record holds a key, a secret or a
// hash (the raw bytes are scanned).
func TestAuditSurvivesKillDashNine(t *testing.T) {
	dir := t.TempDir()
	p := startProcess(t, dir)
	w := attachWorld(t, p.testServer)

	var (
		mu    sync.Mutex
		acked []ack
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	record := func(a ack) {
		mu.Lock()
		defer mu.Unlock()
		acked = append(acked, a)
		if len(acked) >= 40 {
			once.Do(func() { close(enough) })
		}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	defer cancel()
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				r, err := w.send(ctx, call{method: "POST", path: "/api/engine/v2/users", key: w.AdminKey, body: map[string]any{
					"authority_id": w.domainID, "name": fmt.Sprintf("crash %d-%d", g, i), "email": fmt.Sprintf("c%d-%d@example.com", g, i),
				}})
				if err != nil || r.status != http.StatusCreated {
					return // the process is gone
				}
				var u struct{ ID string }
				if json.Unmarshal(r.body, &u) != nil {
					return
				}
				record(ack{kind: keys.KindUser, id: u.ID, requestID: r.header.Get("X-Request-Id")})
				r, err = w.send(ctx, call{method: "POST", path: "/api/engine/v2/api_keys", key: w.AdminKey, body: map[string]any{
					"name": fmt.Sprintf("crash key %d-%d", g, i), "user_id": u.ID, "scopes": []string{"zones.read"},
				}})
				if err != nil || r.status != http.StatusCreated {
					return
				}
				var k keyRecord
				if json.Unmarshal(r.body, &k) != nil || k.XAPIKey == nil {
					return
				}
				record(ack{kind: keys.KindKey, id: k.ID, requestID: r.header.Get("X-Request-Id"), plaintext: *k.XAPIKey})
			}
		})
	}
	<-enough
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL with writes in flight
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	if code := p.wait(t); code != -1 {
		t.Errorf("exit code %d after SIGKILL, want -1", code)
	}

	s, err := badgerstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.ListAudit(t.Context(), keys.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	adminKeyID, _, _ := keys.ParseKey(w.AdminKey)
	byRequest := map[string]*keys.AuditRecord{}
	creates := map[string]int{} // target id → create records
	for _, r := range recs {
		byRequest[r.RequestID] = r
		if r.Action == keys.AuditCreate {
			creates[r.TargetID]++
		}
	}
	for _, a := range acked {
		r := byRequest[a.requestID]
		if a.requestID == "" || r == nil || r.TargetID != a.id || r.TargetKind != a.kind || r.ActorKeyID != adminKeyID {
			t.Errorf("acknowledged %s %s (request %q): record %+v", a.kind, a.id, a.requestID, r)
		}
	}
	// Every record's change is stored, and every stored change has one record.
	users, err := s.ListUsers(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	apiKeys, _, err := s.ListKeys(t.Context(), keys.KeyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	domains, err := s.ListDomains(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, d := range domains {
		stored[d.ID] = true
	}
	for _, u := range users {
		stored[u.ID] = true
	}
	var hashes []string
	for _, k := range apiKeys {
		stored[k.ID] = true
		full, _, _, err := s.KeyForAuth(t.Context(), k.ID)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, full.Hash)
	}
	for id := range stored {
		if creates[id] != 1 {
			t.Errorf("stored record %s has %d create records, want 1", id, creates[id])
		}
	}
	for id := range creates {
		if !stored[id] {
			t.Errorf("a create record of %s, which is not stored", id)
		}
	}
	t.Logf("%d writes acknowledged before the kill; %d users and %d keys stored, %d audit records", len(acked), len(users), len(apiKeys), len(recs))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The stored bytes of every record: no key, secret or hash.
	raw := rawAuditBytes(t, dir)
	if len(raw) == 0 {
		t.Fatal("no audit records in the Badger folder")
	}
	var secrets []string
	for _, a := range acked {
		if a.plaintext != "" {
			_, secret, _ := keys.ParseKey(a.plaintext)
			secrets = append(secrets, a.plaintext, secret)
		}
	}
	for _, v := range append(secrets, hashes...) {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("the stored audit log holds %.12s…", v)
		}
	}
	for _, field := range []string{`"hash"`, `"x_api_key"`, `"secret"`} {
		if bytes.Contains(raw, []byte(field)) {
			t.Errorf("the stored audit log has a field %s", field)
		}
	}
}

// rawAuditBytes returns the stored values under the audit prefix of the Badger folder dir,
// read with Badger itself rather than the store.
func rawAuditBytes(t *testing.T, dir string) []byte {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	err = db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("a/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(append(out, v...), '\n')
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// auditCLI runs keyauthz with args and the caller key in KEYAUTHZ_API_KEY.
func auditCLI(t *testing.T, key string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLI(t, map[string]string{"KEYAUTHZ_API_KEY": key}, args...)
}

func TestAuditListCLI(t *testing.T) {
	w := newWorld(t, "")
	userID := w.createUser(t, "Audited", false)
	w.admin(t, "PATCH", "/api/engine/v2/users/"+userID, map[string]any{"name": "Audited Twice"}, http.StatusOK)
	// The bootstrap domain is "localhost": the CLI must name that host, not 127.0.0.1.
	url := strings.Replace(w.URL, "127.0.0.1", "localhost", 1)

	for _, c := range []struct {
		name    string
		args    []string
		want    []string // in stdout
		wantErr string
	}{
		{"table", []string{"--target", userID}, []string{"ACTION", "update", "create", userID, "name"}, ""},
		{"json", []string{"--target", userID, "--action", "update", "--output", "json"}, []string{`"action": "update"`, `"old": "Audited"`, `"new": "Audited Twice"`}, ""},
		{"paging", []string{"--limit", "1"}, []string{"update"}, ""},
		{"bad action", []string{"--action", "explode"}, nil, "400"},
		{"bad since", []string{"--since", "soon"}, nil, "since"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, err := auditCLI(t, w.AdminKey, append([]string{"audit", "list", "--url", url}, c.args...)...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("error %v, want one mentioning %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v; stderr %s", err, stderr)
			}
			for _, s := range c.want {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
		})
	}
	if _, stderr, err := auditCLI(t, w.AdminKey, "audit", "list", "--url", url, "--limit", "1"); err != nil || !strings.Contains(stderr, "--offset 1 for more") {
		t.Errorf("a first page of one: %v, stderr %q, want the hint for more", err, stderr)
	}
}

func TestAuditRetentionFlags(t *testing.T) {
	dir := t.TempDir()
	w := newWorld(t, dir)
	var ids []string
	for _, name := range []string{"One", "Two", "Three"} {
		ids = append(ids, w.createUser(t, name, false))
	}
	total := func(ts *testServer) string {
		r := ts.admin(t, "GET", "/api/engine/v2/audit?limit=0", nil, http.StatusOK)
		return r.header.Get("X-Total-Count")
	}
	if n := total(w.testServer); n != "6" { // the bootstrap's domain, user and key, and three users
		t.Fatalf("%s records before the restart, want 6", n)
	}
	w.Stop(t)

	// At start, before it listens, serve prunes to the retention.
	ts := startServer(t, dir, "--audit-retention-count", "2")
	if n := total(ts); n != "2" {
		t.Errorf("%s records with --audit-retention-count 2, want 2", n)
	}
	recs := decode[[]keys.AuditRecord](t, ts.admin(t, "GET", "/api/engine/v2/audit", nil, http.StatusOK).body)
	if len(recs) != 2 || recs[0].TargetID != ids[2] || recs[1].TargetID != ids[1] {
		t.Errorf("kept %+v, want the creates of the last two users", recs)
	}
	ts.Stop(t)

	// From the environment: an age every record is older than.
	env := startServerEnv(t, map[string]string{"KEYAUTHZ_AUDIT_RETENTION_AGE": "1ns"},
		"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--eval-timeout", "10s")
	env.AdminKey = w.AdminKey
	if n := total(env); n != "0" {
		t.Errorf("%s records with KEYAUTHZ_AUDIT_RETENTION_AGE=1ns, want 0", n)
	}

	for _, args := range [][]string{{"--audit-retention-count", "-1"}, {"--audit-retention-age", "-1h"}} {
		_, _, err := auditCLI(t, "", append([]string{"serve", "--check", "--data-dir", t.TempDir()}, args...)...)
		if err == nil || !strings.Contains(err.Error(), args[0]+" must not be negative") {
			t.Errorf("serve %v: %v, want a usage error naming the flag", args, err)
		}
	}
}
