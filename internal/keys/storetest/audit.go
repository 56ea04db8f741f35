package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The audit log (keys.Service.ListAudit, PruneAudit; docs/audit.md): exactly one record per
// write, in the write's transaction, with who, what and the changed fields, never a secret.

// auditCaller stores an admin key for a new site and returns a ctx carrying it as the admin
// API's caller, with request id rid, and the key.
func auditCaller(t *testing.T, s keys.Service, rid string) (context.Context, site, *keys.APIKey) {
	t.Helper()
	a := mustSite(t, s, "audit.example")
	k, _ := mustKey(t, s, a.admin, "actor", func(k *keys.APIKey) { k.Permissions = keys.PermissionAdmin; k.Scopes = []string{"public"} })
	c := &keys.Caller{Key: k, User: a.admin, Permissions: keys.PermissionAdmin}
	ctx := keys.ContextWithRequestID(keys.ContextWithCaller(t.Context(), c), rid)
	return ctx, a, k
}

// allAudit returns every record, newest first.
func allAudit(t *testing.T, s keys.Service) []*keys.AuditRecord {
	t.Helper()
	recs, total, err := s.ListAudit(t.Context(), keys.AuditFilter{})
	mustNot(t, "ListAudit", err)
	if total != len(recs) {
		t.Errorf("ListAudit total %d, %d records", total, len(recs))
	}
	return recs
}

// changedFields returns the names of r's changed fields.
func changedFields(r *keys.AuditRecord) []string {
	return ids(r.Changes, func(c keys.FieldChange) string { return c.Field })
}

// change returns r's change of field, or fails t.
func change(t *testing.T, r *keys.AuditRecord, field string) keys.FieldChange {
	t.Helper()
	for _, c := range r.Changes {
		if c.Field == field {
			return c
		}
	}
	t.Fatalf("record %s %s %s has no change of %s (has %v)", r.Action, r.TargetKind, r.TargetID, field, changedFields(r))
	return keys.FieldChange{}
}

var auditTests = []test{
	{"EveryWriteLeavesOneRecord", func(t *testing.T, s keys.Service) {
		ctx, a, actor := auditCaller(t, s, "req-1")
		var d keys.Domain
		var u keys.User
		var k keys.APIKey
		for _, w := range []struct {
			name         string
			write        func() error
			action, kind string
			target       func() string
			fields       []string // fields that must be among the changes
			old, new     string   // the JSON values of fields[0]
		}{
			{"CreateDomain", func() error { d = keys.Domain{Name: "New", Domain: "new.example"}; return s.CreateDomain(ctx, &d) },
				keys.AuditCreate, keys.KindDomain, func() string { return d.ID }, []string{"name", "domain", "id"}, `null`, `"New"`},
			{"ModifyDomain", func() error {
				_, err := s.ModifyDomain(ctx, d.ID, func(d *keys.Domain) error { d.Name = "Renamed"; return nil })
				return err
			}, keys.AuditUpdate, keys.KindDomain, func() string { return d.ID }, []string{"name"}, `"New"`, `"Renamed"`},
			{"CreateUser", func() error {
				u = keys.User{AuthorityID: d.ID, Name: "Ann", Email: "ann@new.example"}
				return s.CreateUser(ctx, &u)
			}, keys.AuditCreate, keys.KindUser, func() string { return u.ID }, []string{"name", "email", "authority_id"}, `null`, `"Ann"`},
			{"ModifyUser", func() error {
				_, err := s.ModifyUser(ctx, u.ID, func(u *keys.User) error { u.Support = true; return nil })
				return err
			}, keys.AuditUpdate, keys.KindUser, func() string { return u.ID }, []string{"support"}, `false`, `true`},
			{"CreateKey", func() error {
				k = keys.APIKey{Name: "k", UserID: u.ID, Scopes: []string{"systems"}}
				_, err := s.CreateKey(ctx, &k)
				return err
			}, keys.AuditCreate, keys.KindKey, func() string { return k.ID }, []string{"name", "scopes", "user_id"}, `null`, `"k"`},
			{"UpdateKey", func() error {
				_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Scopes: &[]string{"systems", "zones.read"}})
				return err
			}, keys.AuditUpdate, keys.KindKey, func() string { return k.ID }, []string{"scopes"}, `["systems"]`, `["systems","zones.read"]`},
			{"DeleteKey", func() error { return s.DeleteKey(ctx, k.ID) },
				keys.AuditDelete, keys.KindKey, func() string { return k.ID }, []string{"name"}, `"k"`, `null`},
			{"DeleteUser", func() error { return s.DeleteUser(ctx, u.ID) },
				keys.AuditDelete, keys.KindUser, func() string { return u.ID }, []string{"name"}, `"Ann"`, `null`},
			{"DeleteDomain", func() error { return s.DeleteDomain(ctx, d.ID) },
				keys.AuditDelete, keys.KindDomain, func() string { return d.ID }, []string{"name"}, `"Renamed"`, `null`},
		} {
			before := allAudit(t, s)
			start := time.Now().Unix()
			mustNot(t, w.name, w.write())
			after := allAudit(t, s)
			if len(after) != len(before)+1 {
				t.Errorf("%s: %d records after, %d before; want one more", w.name, len(after), len(before))
				continue
			}
			r := after[0] // newest first
			if r.Action != w.action || r.TargetKind != w.kind || r.TargetID != w.target() {
				t.Errorf("%s: record %s %s %s, want %s %s %s", w.name, r.Action, r.TargetKind, r.TargetID, w.action, w.kind, w.target())
			}
			if r.ActorKeyID != actor.ID || r.ActorUserID != a.admin.ID || r.RequestID != "req-1" {
				t.Errorf("%s: actor %q/%q request %q, want %q/%q req-1", w.name, r.ActorKeyID, r.ActorUserID, r.RequestID, actor.ID, a.admin.ID)
			}
			if r.Time < start || r.Time > time.Now().Unix() || !strings.HasPrefix(r.ID, "audit-") {
				t.Errorf("%s: record id %q time %d, want an audit- id and a time from %d to now", w.name, r.ID, r.Time, start)
			}
			for _, f := range w.fields {
				if !slices.Contains(changedFields(r), f) {
					t.Errorf("%s: changed fields %v, want %s among them", w.name, changedFields(r), f)
				}
			}
			c := change(t, r, w.fields[0])
			if string(c.Old) != w.old || string(c.New) != w.new {
				t.Errorf("%s: %s changed %s → %s, want %s → %s", w.name, c.Field, c.Old, c.New, w.old, w.new)
			}
			if slices.Contains(changedFields(r), "updated_at") {
				t.Errorf("%s: updated_at recorded as a change", w.name)
			}
		}
	}},
	{"UpdateRecordsOnlyWhatChanged", func(t *testing.T, s keys.Service) {
		ctx, a, _ := auditCaller(t, s, "req-2")
		k, _ := mustKey(t, s, a.user, "plain", func(k *keys.APIKey) { k.Description = "old" })
		_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Description: ptr("new")})
		mustNot(t, "UpdateKey", err)
		r := allAudit(t, s)[0]
		if got := changedFields(r); !slices.Equal(got, []string{"description"}) {
			t.Errorf("changed fields %v, want [description]", got)
		}
	}},
	{"WriteWithoutCallerHasNoActor", func(t *testing.T, s keys.Service) {
		d := mustDomain(t, s, "Boot", "boot.example")
		r := allAudit(t, s)[0]
		if r.TargetID != d.ID || r.ActorKeyID != "" || r.ActorUserID != "" || r.RequestID != "" {
			t.Errorf("record %+v, want domain %s with no actor and no request", r, d.ID)
		}
	}},
	{"FailedWriteLeavesNone", func(t *testing.T, s keys.Service) {
		ctx, a, _ := auditCaller(t, s, "req-3")
		k, _ := mustKey(t, s, a.user, "taken")
		refuse := errors.New("refused by check")
		before := allAudit(t, s)
		for _, w := range []struct {
			name  string
			write func() error
		}{
			{"CreateDomain invalid", func() error { return s.CreateDomain(ctx, &keys.Domain{Name: "", Domain: "x.example"}) }},
			{"CreateDomain host taken", func() error { return s.CreateDomain(ctx, &keys.Domain{Name: "Dup", Domain: "audit.example"}) }},
			{"ModifyDomain missing", func() error {
				_, err := s.ModifyDomain(ctx, "authority-missing", func(*keys.Domain) error { return nil })
				return err
			}},
			{"ModifyDomain change error", func() error {
				_, err := s.ModifyDomain(ctx, a.domain.ID, func(d *keys.Domain) error { d.Name = "x"; return refuse })
				return err
			}},
			{"CreateUser no domain", func() error {
				return s.CreateUser(ctx, &keys.User{AuthorityID: "authority-missing", Name: "N", Email: "n@x"})
			}},
			{"ModifyUser invalid", func() error {
				_, err := s.ModifyUser(ctx, a.user.ID, func(u *keys.User) error { u.Email = "no-at"; return nil })
				return err
			}},
			{"CreateKey name taken", func() error {
				_, err := s.CreateKey(ctx, &keys.APIKey{Name: "taken", UserID: a.user.ID})
				return err
			}},
			{"UpdateKey check refuses", func() error {
				_, err := s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("other"), Check: func(_, _ *keys.APIKey) error { return refuse }})
				return err
			}},
			{"DeleteKey check refuses", func() error { return s.DeleteKey(ctx, k.ID, func(*keys.APIKey) error { return refuse }) }},
			{"DeleteKey missing", func() error { return s.DeleteKey(ctx, "0123456789abcdef0123456789abcdef") }},
			{"DeleteUser check refuses", func() error {
				return s.DeleteUser(ctx, a.user.ID, func(*keys.User, []*keys.APIKey) error { return refuse })
			}},
			{"DeleteDomain check refuses", func() error {
				return s.DeleteDomain(ctx, a.domain.ID, func(*keys.User, []*keys.APIKey) error { return refuse })
			}},
		} {
			if err := w.write(); err == nil {
				t.Errorf("%s: succeeded, want an error", w.name)
			}
		}
		if after := allAudit(t, s); len(after) != len(before) {
			t.Errorf("%d records after the failed writes, %d before; want none added (newest: %+v)", len(after), len(before), after[0])
		}
	}},
	{"CascadeIsOneRecord", func(t *testing.T, s keys.Service) {
		ctx, _, _ := auditCaller(t, s, "req-4")
		b := mustSite(t, s, "b.example")
		k1, _ := mustKey(t, s, b.user, "one")
		k2, _ := mustKey(t, s, b.admin, "two")
		before := allAudit(t, s)
		mustNot(t, "DeleteDomain", s.DeleteDomain(ctx, b.domain.ID))
		after := allAudit(t, s)
		if len(after) != len(before)+1 {
			t.Fatalf("%d records after the cascade, %d before; want one more", len(after), len(before))
		}
		r := after[0]
		var got []string
		for _, c := range r.Cascade {
			got = append(got, c.Kind+" "+c.ID)
		}
		slices.Sort(got)
		want := []string{keys.KindKey + " " + k1.ID, keys.KindKey + " " + k2.ID, keys.KindUser + " " + b.user.ID, keys.KindUser + " " + b.admin.ID}
		slices.Sort(want)
		if r.TargetID != b.domain.ID || !slices.Equal(got, want) {
			t.Errorf("record of %s cascade %v, want %s cascade %v", r.TargetID, got, b.domain.ID, want)
		}
		// The cascade's keys are found by their own id.
		recs, n, err := s.ListAudit(t.Context(), keys.AuditFilter{Target: k1.ID})
		mustNot(t, "ListAudit target", err)
		if n != 2 || recs[0].ID != r.ID || recs[1].Action != keys.AuditCreate {
			t.Errorf("ListAudit(target %s) = %d records, want its delete (the cascade) then its create", k1.ID, n)
		}
	}},
	{"NoSecretOrHash", func(t *testing.T, s keys.Service) {
		ctx, a, _ := auditCaller(t, s, "req-5")
		k := &keys.APIKey{Name: "secretive", UserID: a.user.ID}
		pt, err := s.CreateKey(ctx, k)
		mustNot(t, "CreateKey", err)
		_, err = s.UpdateKey(ctx, k.ID, keys.KeyUpdate{Name: ptr("renamed")})
		mustNot(t, "UpdateKey", err)
		stored, _, _, err := s.KeyForAuth(ctx, k.ID)
		mustNot(t, "KeyForAuth", err)
		mustNot(t, "DeleteKey", s.DeleteKey(ctx, k.ID))
		_, secret, _ := keys.ParseKey(string(pt))
		b, err := json.Marshal(allAudit(t, s))
		mustNot(t, "marshal", err)
		for what, v := range map[string]string{"plaintext": string(pt), "secret": secret, "hash": stored.Hash} {
			if v == "" || strings.Contains(string(b), v) {
				t.Errorf("the %s (%q) is in the audit log", what, v)
			}
		}
		for _, f := range []string{`"hash"`, `"x_api_key"`, `"secret"`} {
			if strings.Contains(string(b), f) {
				t.Errorf("a field %s is in the audit log", f)
			}
		}
	}},
	{"FiltersAndPaging", func(t *testing.T, s keys.Service) {
		ctx, a, actor := auditCaller(t, s, "req-6")
		start := time.Now().Unix()
		var made []*keys.Domain
		for _, host := range []string{"p1.example", "p2.example", "p3.example"} {
			d := &keys.Domain{Name: host, Domain: host}
			mustNot(t, "CreateDomain", s.CreateDomain(ctx, d))
			made = append(made, d)
		}
		mustNot(t, "DeleteDomain", s.DeleteDomain(ctx, made[0].ID))
		end := time.Now().Unix() + 1
		all := allAudit(t, s)
		for i := 1; i < len(all); i++ {
			if all[i-1].ID < all[i].ID || all[i-1].Time < all[i].Time {
				t.Errorf("records not newest first: %s (%d) before %s (%d)", all[i-1].ID, all[i-1].Time, all[i].ID, all[i].Time)
			}
		}
		for _, c := range []struct {
			name string
			f    keys.AuditFilter
			want []string // target ids, newest first
			n    int      // total, if not len(want)
		}{
			{"actor key", keys.AuditFilter{Actor: actor.ID}, []string{made[0].ID, made[2].ID, made[1].ID, made[0].ID}, 0},
			{"actor user", keys.AuditFilter{Actor: a.admin.ID}, []string{made[0].ID, made[2].ID, made[1].ID, made[0].ID}, 0},
			{"action", keys.AuditFilter{Action: keys.AuditDelete}, []string{made[0].ID}, 0},
			{"target", keys.AuditFilter{Target: made[1].ID}, []string{made[1].ID}, 0},
			{"actor and action", keys.AuditFilter{Actor: actor.ID, Action: keys.AuditCreate}, []string{made[2].ID, made[1].ID, made[0].ID}, 0},
			{"page", keys.AuditFilter{Actor: actor.ID, Limit: 2, Offset: 1}, []string{made[2].ID, made[1].ID}, 4},
			{"offset past the end", keys.AuditFilter{Actor: actor.ID, Offset: 10}, nil, 4},
			{"since and until around", keys.AuditFilter{Actor: actor.ID, Since: start, Until: end}, []string{made[0].ID, made[2].ID, made[1].ID, made[0].ID}, 0},
			{"since later", keys.AuditFilter{Since: end + 3600}, nil, 0},
			{"until earlier", keys.AuditFilter{Until: start - 3600}, nil, 0},
			{"unknown actor", keys.AuditFilter{Actor: "nobody"}, nil, 0},
		} {
			recs, n, err := s.ListAudit(t.Context(), c.f)
			mustNot(t, c.name, err)
			got := ids(recs, func(r *keys.AuditRecord) string { return r.TargetID })
			wantN := c.n
			if wantN == 0 {
				wantN = len(c.want)
			}
			if !slices.Equal(got, c.want) || n != wantN {
				t.Errorf("%s: %v (total %d), want %v (total %d)", c.name, got, n, c.want, wantN)
			}
		}
	}},
	{"PruneByCountAndAge", func(t *testing.T, s keys.Service) {
		ctx := t.Context()
		for _, host := range []string{"q1.example", "q2.example", "q3.example", "q4.example"} {
			mustDomain(t, s, host, host)
		}
		all := allAudit(t, s)
		n, err := s.PruneAudit(ctx, keys.AuditRetention{MaxCount: 2, MaxAge: time.Hour})
		mustNot(t, "PruneAudit by count", err)
		kept := allAudit(t, s)
		if n != len(all)-2 || len(kept) != 2 || kept[0].ID != all[0].ID || kept[1].ID != all[1].ID {
			t.Errorf("PruneAudit(count 2) deleted %d, kept %d; want %d deleted and the newest two kept", n, len(kept), len(all)-2)
		}
		n, err = s.PruneAudit(ctx, keys.AuditRetention{MaxAge: time.Hour})
		if err != nil || n != 0 || len(allAudit(t, s)) != 2 {
			t.Errorf("PruneAudit(age 1h) of fresh records deleted %d (%v), want none", n, err)
		}
		// Every record was made before now, so an age of 1ns leaves none.
		n, err = s.PruneAudit(ctx, keys.AuditRetention{MaxAge: time.Nanosecond})
		if err != nil || n != 2 || len(allAudit(t, s)) != 0 {
			t.Errorf("PruneAudit(age 1ns) deleted %d (%v), want 2 and none left", n, err)
		}
		// Pruning writes no record of its own, and the store goes on recording.
		mustDomain(t, s, "q5", "q5.example")
		if got := len(allAudit(t, s)); got != 1 {
			t.Errorf("%d records after one more write, want 1", got)
		}
	}},
}
