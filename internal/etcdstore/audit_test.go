package etcdstore_test

import (
	"bytes"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/etcdstore"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestAuditStoredBytesHoldNoSecret writes keys through every write that sees them (create,
// update, rotate, delete) and scans the values etcd holds under the audit prefix, read with the
// etcd client rather than the store: no plaintext key, secret or hash, and no field named
// after one. The conformance suite checks the records as ListAudit decodes them; this checks
// what is stored.
func TestAuditStoredBytesHoldNoSecret(t *testing.T) {
	m := startEtcd(t)
	cli := m.client(t)
	const prefix = "/audit-bytes/"
	s := open(t, cli, etcdstore.WithPrefix(prefix))
	ctx := t.Context()
	d := &keys.Domain{Name: "a", Domain: "a.example"}
	if err := s.CreateDomain(ctx, d); err != nil {
		t.Fatal(err)
	}
	u := &keys.User{AuthorityID: d.ID, Name: "u", Email: "u@a.example", SysAdmin: true}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	remember := func(id, plaintext string) {
		full, _, _, err := s.KeyForAuth(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, secret, _ := keys.ParseKey(plaintext)
		secrets = append(secrets, []byte(plaintext), []byte(secret), []byte(full.Hash))
	}
	k := &keys.APIKey{Name: "k", UserID: u.ID, Scopes: []string{"systems"}}
	pt, err := s.CreateKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	remember(k.ID, string(pt))
	renamed := "k2"
	if _, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: &renamed}); err != nil {
		t.Fatal(err)
	}
	r, err := s.RotateKey(ctx, k.ID, keys.KeyRotation{})
	if err != nil {
		t.Fatal(err)
	}
	remember(r.Key.ID, string(r.Plaintext))
	if err := s.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}

	resp, err := cli.Get(ctx, prefix+"a/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 6 { // domain, user, key, update, rotate, delete
		t.Errorf("%d records stored, want 6", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		for _, v := range secrets {
			if bytes.Contains(kv.Value, v) {
				t.Errorf("record %s holds %.12s…", kv.Key, v)
			}
		}
		for _, f := range []string{`"hash"`, `"x_api_key"`, `"secret"`} {
			if bytes.Contains(kv.Value, []byte(f)) {
				t.Errorf("record %s has a field %s", kv.Key, f)
			}
		}
	}
}
