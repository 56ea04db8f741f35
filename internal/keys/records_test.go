package keys

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPrepareKeyAndValidate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	past := now.Unix()
	k := &APIKey{Name: "  k  ", Scopes: []string{"systems.READ"}, UserID: "u1", ExpiresAt: &past}
	n, err := PrepareKey(k, now)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "" || k.Name != "  k  " {
		t.Errorf("PrepareKey changed its input: %+v", k)
	}
	r := n.Record
	if r.Name != "k" || r.Scopes[0] != "systems.read" || r.Permissions != PermissionUser || r.CreatedAt != now.Unix() || r.UpdatedAt != now.Unix() {
		t.Errorf("record = %+v", r)
	}
	if id, secret, ok := ParseKey(string(n.Plaintext)); !ok || id != r.ID || !VerifyHash(id, secret, n.Hash) {
		t.Errorf("key material does not match: %v %s", ok, id)
	}
	if !HasFailure(n.Failures, "expires_at") {
		t.Errorf("failures = %v, want expires_at", n.Failures)
	}
	if _, err := PrepareKey(&APIKey{Scopes: []string{"a.b.c"}}, now); ErrorCode(err) != EINVALID {
		t.Errorf("malformed scope: %v, want EINVALID", err)
	}

	n.Failures = nil
	user := func(id string) (*User, error) {
		if id == "u1" {
			return &User{ID: "u1", AuthorityID: "d1"}, nil
		}
		return nil, NotFound("user", id)
	}
	var asked string
	taken := func(name string) (bool, error) { asked = name; return true, nil }
	err = n.Validate(user, taken)
	if fs := ErrorFailures(err); !HasFailure(fs, "name") || asked != "k" || n.Record.AuthorityID != "d1" {
		t.Errorf("Validate = %v (asked %q, authority %q)", err, asked, n.Record.AuthorityID)
	}
	n.Record.UserID = "gone"
	if fs := ErrorFailures(n.Validate(user, taken)); len(fs) != 1 || fs[0] != (Failure{"user_id", ReasonMissing}) {
		t.Errorf("unknown user: %v", fs)
	}
	boom := errors.New("boom")
	n.Record.UserID = "u1"
	if err := n.Validate(user, func(string) (bool, error) { return false, boom }); err != boom {
		t.Errorf("store error = %v, want it as is", err)
	}
}

func TestKeyPatchApply(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	user := func(string) (*User, error) { return &User{}, nil }
	free := func(string) (bool, error) { return false, nil }
	name := "RENAMED"
	p, err := PrepareKeyUpdate(KeyUpdate{Name: &name}, now)
	if err != nil {
		t.Fatal(err)
	}
	rec := &APIKey{ID: "x", Name: "renamed", Hash: "h"}
	if renamed, err := p.Apply(rec, user, free); err != nil || renamed || rec.UpdatedAt != now.Unix() || rec.Hash != "h" {
		t.Errorf("case-only rename: renamed %v, err %v, rec %+v", renamed, err, rec)
	}
	name = "other"
	p, _ = PrepareKeyUpdate(KeyUpdate{Name: &name}, now)
	if _, err := p.Apply(&APIKey{Name: "k"}, user, func(string) (bool, error) { return true, nil }); !HasFailure(ErrorFailures(err), "name") {
		t.Errorf("rename onto a taken name: %v", err)
	}
	admin := PermissionAdmin
	refused := Errorf(EFORBIDDEN, "no")
	p, _ = PrepareKeyUpdate(KeyUpdate{Permissions: &admin, Check: func(before, after *APIKey) error {
		if before.Hash != "" || after.Hash != "" || after.Permissions != PermissionAdmin {
			t.Errorf("Check saw %+v -> %+v", before, after)
		}
		return refused
	}}, now)
	if _, err := p.Apply(&APIKey{Name: "k", Hash: "h"}, user, free); err != refused {
		t.Errorf("Apply = %v, want Check's error before validation", err)
	}
	if _, err := PrepareKeyUpdate(KeyUpdate{Scopes: &[]string{"Bad"}}, now); ErrorCode(err) != EINVALID {
		t.Errorf("malformed scope: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	plaintext, id, hash, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	exp := now.Unix()
	stored := func(expires *int64) func(context.Context, string) (*APIKey, *User, *Domain, error) {
		return func(_ context.Context, got string) (*APIKey, *User, *Domain, error) {
			if got != id {
				return nil, nil, nil, NotFound("key", got)
			}
			return &APIKey{ID: id, Hash: hash, ExpiresAt: expires}, &User{}, &Domain{}, nil
		}
	}
	ctx := context.Background()
	if r, err := Authenticate(ctx, string(plaintext), now, stored(nil)); err != nil || r.Key.Hash != "" {
		t.Errorf("valid key: %v, %+v", err, r)
	}
	if _, err := Authenticate(ctx, string(plaintext), now, stored(&exp)); err != ErrExpiredKey {
		t.Errorf("expired key: %v", err)
	}
	other, _, _, _ := Generate()
	wrong := id + string(other[len(id):]) // this id, another key's secret
	if _, err := Authenticate(ctx, wrong, now, stored(nil)); err != ErrUnknownKey {
		t.Errorf("wrong secret: %v", err)
	}
	called := false
	if _, err := Authenticate(ctx, "short", now, func(context.Context, string) (*APIKey, *User, *Domain, error) {
		called = true
		return nil, nil, nil, nil
	}); err != ErrUnknownKey || called {
		t.Errorf("malformed key: %v, store read %v", err, called)
	}
}

func TestSelectKeys(t *testing.T) {
	all := []*APIKey{
		{ID: "3", Name: "b", Hash: "h"},
		{ID: "2", Name: "A", Description: "find me"},
		{ID: "1", Name: "a"},
		{ID: "4", Name: "c"},
	}
	got, n := SelectKeys(all, KeyFilter{Offset: 1, Limit: 2})
	if n != 4 || len(got) != 2 || got[0].ID != "2" || got[1].ID != "3" || got[1].Hash != "" {
		t.Errorf("page = %v, %d", got, n)
	}
	if got, n := SelectKeys(all, KeyFilter{Q: " FIND "}); n != 1 || got[0].ID != "2" {
		t.Errorf("query = %v, %d", got, n)
	}
	if got, n := SelectKeys(all, KeyFilter{Offset: 9}); n != 4 || len(got) != 0 {
		t.Errorf("past the end = %v, %d", got, n)
	}
}

func TestPatchDomainAndUser(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	old := &Domain{ID: "d", Name: "n", Domain: "a.example", CreatedAt: 1}
	rec, changed, err := PatchDomain(old, func(d *Domain) error { d.ID, d.Domain = "other", "HTTPS://B.example:8080/"; return nil }, now,
		func(string) (bool, error) { return false, nil })
	if err != nil || !changed || rec.ID != "d" || rec.Domain != "b.example" || rec.CreatedAt != 1 || rec.UpdatedAt != now.Unix() {
		t.Errorf("PatchDomain = %+v, %v, %v", rec, changed, err)
	}
	if _, _, err := PatchDomain(old, func(d *Domain) error { d.Domain = "b.example"; return nil }, now,
		func(string) (bool, error) { return true, nil }); !HasFailure(ErrorFailures(err), "domain") {
		t.Errorf("taken host: %v", err)
	}
	d, fs := PrepareDomain(&Domain{Name: " x ", Domain: "X.example"}, now)
	if len(fs) != 0 || d.ID == "" || d.Name != "x" || d.Domain != "x.example" || d.CreatedAt != now.Unix() {
		t.Errorf("PrepareDomain = %+v, %v", d, fs)
	}
	if err := ValidateNewDomain(&d, nil, func(string) (bool, error) { return true, nil }); !HasFailure(ErrorFailures(err), "domain") {
		t.Errorf("ValidateNewDomain: %v", err)
	}

	ou := &User{ID: "u", AuthorityID: "d", Name: "n", Email: "a@b", Groups: []string{"g"}}
	if _, err := PatchUser(ou, func(u *User) error { u.AuthorityID = "e"; u.Groups[0] = "h"; return nil }, now); !HasFailure(ErrorFailures(err), "authority_id") || ou.Groups[0] != "g" {
		t.Errorf("PatchUser move: %v, old groups %v", err, ou.Groups)
	}
	u, fs := PrepareUser(&User{Name: "n", Email: "a@b"}, now)
	if len(fs) != 0 || u.ID == "" || u.Groups == nil {
		t.Errorf("PrepareUser = %+v, %v", u, fs)
	}
	if fs := ErrorFailures(ValidateNewUser(&u, nil, nil)); len(fs) != 1 || fs[0] != (Failure{"authority_id", ReasonRequired}) {
		t.Errorf("ValidateNewUser without domain: %v", fs)
	}
	u.AuthorityID = "d"
	if fs := ErrorFailures(ValidateNewUser(&u, nil, func(string) (bool, error) { return false, nil })); len(fs) != 1 || fs[0].Reason != ReasonMissing {
		t.Errorf("ValidateNewUser unknown domain: %v", fs)
	}
}

func TestMarkUsed(t *testing.T) {
	var k APIKey
	if !k.MarkUsed(5) || *k.LastUsedAt != 5 || k.MarkUsed(5) || k.MarkUsed(4) || !k.MarkUsed(6) {
		t.Errorf("MarkUsed sequence wrong: %v", *k.LastUsedAt)
	}
}
