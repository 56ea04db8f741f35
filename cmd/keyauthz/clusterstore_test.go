package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/testutil"
)

// TestStoreFlags: --store and the etcd client options are validated with the rest of the
// configuration, every problem at once, from flags or from KEYAUTHZ_*; a good etcd
// configuration passes --check without contacting etcd.
func TestStoreFlags(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		note string
		env  map[string]string
		args []string
		want []string // in the error; none: valid
	}{
		{"bad scheme", nil, []string{"--store", "http://127.0.0.1:2379"}, []string{`--store "http://127.0.0.1:2379": want etcd://`}},
		{"bad endpoint", nil, []string{"--store", "etcd://a:1,nohost"}, []string{`endpoint "nohost" is not host:port`}},
		{"credentials in the endpoint", nil, []string{"--store", "etcd://root:hunter2@127.0.0.1:2379"}, []string{"--etcd-password-file"}},
		{"etcd options without etcd", nil, []string{"--etcd-user", "u", "--etcd-cacert", "ca.pem"}, []string{"--etcd-user needs --store etcd://", "--etcd-cacert needs --store etcd://"}},
		{"every problem at once", nil, []string{"--store", "etcd://127.0.0.1:2379", "--etcd-cert", "c.pem", "--etcd-user", "u", "--etcd-cacert", filepath.Join(dir, "missing.pem"), "--addr", "nope"},
			[]string{"--etcd-cert and --etcd-key go together", "--etcd-user and --etcd-password-file go together", "--etcd-cacert: stat", "--addr"}},
		{"empty password file", nil, []string{"--store", "etcd://127.0.0.1:2379", "--etcd-user", "u", "--etcd-password-file", empty}, []string{"is empty"}},
		{"from the environment", map[string]string{"KEYAUTHZ_STORE": "etcd:/x"}, nil, []string{`--store "etcd:/x"`}},
		{"valid", map[string]string{"KEYAUTHZ_STORE": "etcd://127.0.0.1:1,[::1]:2", "KEYAUTHZ_ETCD_USER": "u", "KEYAUTHZ_ETCD_PASSWORD_FILE": pw}, nil, nil},
		{"stale grace without etcd", nil, []string{"--stale-grace", "30s"}, []string{"--stale-grace needs --store etcd://"}},
		{"negative stale grace", nil, []string{"--store", "etcd://127.0.0.1:2379", "--stale-grace", "-1s"}, []string{"--stale-grace must not be negative"}},
		{"stale grace not a duration", map[string]string{"KEYAUTHZ_STORE": "etcd://127.0.0.1:2379", "KEYAUTHZ_STALE_GRACE": "30"}, nil, []string{"KEYAUTHZ_STALE_GRACE"}},
		{"stale grace from the environment", map[string]string{"KEYAUTHZ_STORE": "etcd://127.0.0.1:2379", "KEYAUTHZ_STALE_GRACE": "30s"}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.note, func(t *testing.T) {
			args := append([]string{"serve", "--check", "--data-dir", filepath.Join(t.TempDir(), "d")}, c.args...)
			out, stderr, err := runCLI(t, c.env, args...)
			// A credential in a refused value is never echoed back.
			if strings.Contains(fmt.Sprint(err)+out+stderr, "hunter2") {
				t.Errorf("the password of a refused --store is echoed: %v\n%s%s", err, out, stderr)
			}
			if c.want == nil {
				if err != nil || !strings.Contains(out, "are valid") {
					t.Fatalf("want valid, got %v (%s)", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error naming %q, got none", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestBootstrapOncePerCluster: nodes that find one store empty at the same moment bootstrap
// it once: one writes the key file, the others log that the cluster is already bootstrapped
// and write none.
func TestBootstrapOncePerCluster(t *testing.T) {
	store, err := badgerstore.OpenInMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const nodes = 8
	dirs := make([]string, nodes)
	logs := make([]*testutil.SyncBuffer, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, nodes)
	for i := range nodes {
		dirs[i], logs[i] = t.TempDir(), &testutil.SyncBuffer{}
		cfg := DefaultConfig()
		cfg.DataDir, cfg.Store = dirs[i], "etcd://127.0.0.1:2379"
		logger := slog.New(slog.NewJSONHandler(logs[i], nil))
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = bootstrap(t.Context(), store, cfg, logger)
		}()
	}
	close(start)
	wg.Wait()
	written := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Errorf("node %d: %v", i, errs[i])
		}
		_, err := os.Stat(filepath.Join(dirs[i], bootstrapKeyFile))
		switch {
		case err == nil:
			written++
		case !bytes.Contains([]byte(logs[i].String()), []byte("already bootstrapped")):
			t.Errorf("node %d wrote no key and did not say the cluster was bootstrapped: %s", i, logs[i])
		}
	}
	if written != 1 {
		t.Fatalf("%d nodes wrote the bootstrap key, want 1", written)
	}
	if ds, _ := store.ListDomains(t.Context()); len(ds) != 1 {
		t.Fatalf("%d domains, want 1", len(ds))
	}
}
