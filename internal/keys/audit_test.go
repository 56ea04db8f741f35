package keys

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNewAuditRecord: the changed fields of each kind of write, the actor and request from the
// context, and what never reaches a record.
func TestNewAuditRecord(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	caller := &Caller{Key: &APIKey{ID: "k1", UserID: "u-of-key"}, User: &User{ID: "u1"}}
	ctx := ContextWithRequestID(ContextWithCaller(context.Background(), caller), "req-9")
	key := &APIKey{ID: "k2", Name: "door", Scopes: []string{"systems"}, UpdatedAt: 5, Hash: "ab12"}
	renamed := *key
	renamed.Name, renamed.UpdatedAt = "front door", 6
	for _, c := range []struct {
		name          string
		ctx           context.Context
		before, after any
		want          map[string][2]string // field → old, new
		actor         [2]string
	}{
		{"create", ctx, nil, key, map[string][2]string{"name": {`null`, `"door"`}, "scopes": {`null`, `["systems"]`}}, [2]string{"k1", "u1"}},
		{"update", ctx, key, &renamed, map[string][2]string{"name": {`"door"`, `"front door"`}}, [2]string{"k1", "u1"}},
		{"delete", ctx, key, nil, map[string][2]string{"name": {`"door"`, `null`}, "id": {`"k2"`, `null`}}, [2]string{"k1", "u1"}},
		{"no caller", context.Background(), nil, &Domain{ID: "d", Name: "n"}, map[string][2]string{"name": {`null`, `"n"`}}, [2]string{"", ""}},
		{"secrets at any depth", ctx, nil, map[string]any{
			"name": "x", "hash": "h", "X_API_KEY": "k", "nested": map[string]any{"secret": "s", "ok": 1}, "list": []any{map[string]any{"hash": "h"}},
		}, map[string][2]string{"name": {`null`, `"x"`}, "nested": {`null`, `{"ok":1}`}, "list": {`null`, `[{}]`}}, [2]string{"k1", "u1"}},
		{"raw JSON before", ctx, json.RawMessage(`{"name":"a","updated_at":1}`), map[string]any{"name": "b", "updated_at": 2},
			map[string][2]string{"name": {`"a"`, `"b"`}}, [2]string{"k1", "u1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewAuditRecord(c.ctx, now, c.name, KindKey, "t", c.before, c.after)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][2]string{}
			for _, fc := range r.Changes {
				got[fc.Field] = [2]string{string(fc.Old), string(fc.New)}
			}
			for f, want := range c.want {
				if got[f] != want {
					t.Errorf("%s: %s → %s, want %s → %s", f, got[f][0], got[f][1], want[0], want[1])
				}
			}
			for _, f := range []string{"hash", "x_api_key", "X_API_KEY", "secret", "updated_at", "last_used_at"} {
				if _, ok := got[f]; ok {
					t.Errorf("field %s recorded", f)
				}
			}
			if c.name == "update" && len(got) != 1 {
				t.Errorf("an update of the name recorded %v", got)
			}
			b, _ := json.Marshal(r)
			if strings.Contains(string(b), "ab12") || strings.Contains(string(b), `"s"`) {
				t.Errorf("a secret value in %s", b)
			}
			if r.ActorKeyID != c.actor[0] || r.ActorUserID != c.actor[1] || r.Time != now.Unix() || !strings.HasPrefix(r.ID, "audit-") {
				t.Errorf("record %+v", r)
			}
			if want := map[bool]string{true: "req-9", false: ""}[c.ctx == ctx]; r.RequestID != want {
				t.Errorf("request id %q, want %q", r.RequestID, want)
			}
		})
	}
	if _, err := NewAuditRecord(ctx, now, AuditCreate, KindKey, "t", nil, []string{"not an object"}); err == nil {
		t.Error("a record of a JSON array: no error")
	}
}

// TestAuditIDsSortByTime: ids made later sort later, also within one clock tick, and
// AuditIDFloor is below every id made at or after its time.
func TestAuditIDsSortByTime(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	ids := []string{NewAuditID(t0), NewAuditID(t0), NewAuditID(t0.Add(time.Nanosecond)), NewAuditID(t0.Add(time.Hour))}
	if !slices.IsSorted(ids) {
		t.Errorf("ids not in creation order: %v", ids)
	}
	if floor := AuditIDFloor(t0); floor >= ids[0] || AuditIDFloor(t0.Add(time.Hour)) <= ids[2] {
		t.Errorf("floor %s against %v", floor, ids)
	}
}

func TestSelectAudit(t *testing.T) {
	recs := []*AuditRecord{
		{ID: "4", Time: 40, Action: AuditDelete, TargetID: "d", ActorKeyID: "k", ActorUserID: "u", Cascade: []AuditTarget{{KindKey, "x"}}},
		{ID: "3", Time: 30, Action: AuditRotate, TargetID: "y", ActorKeyID: "k2", ActorUserID: "u", Related: []AuditTarget{{KindKey, "z"}}},
		{ID: "2", Time: 20, Action: AuditUpdate, TargetID: "x", ActorKeyID: "k", ActorUserID: "u"},
		{ID: "1", Time: 10, Action: AuditCreate, TargetID: "x"},
	}
	for _, c := range []struct {
		name string
		f    AuditFilter
		want []string
		n    int
	}{
		{"all", AuditFilter{}, []string{"4", "3", "2", "1"}, 4},
		{"target with cascade", AuditFilter{Target: "x"}, []string{"4", "2", "1"}, 3},
		{"target in related", AuditFilter{Target: "z"}, []string{"3"}, 1},
		{"actor key", AuditFilter{Actor: "k"}, []string{"4", "2"}, 2},
		{"actor user", AuditFilter{Actor: "u"}, []string{"4", "3", "2"}, 3},
		{"action", AuditFilter{Action: AuditUpdate}, []string{"2"}, 1},
		{"since inclusive, until exclusive", AuditFilter{Since: 20, Until: 40}, []string{"3", "2"}, 2},
		{"page", AuditFilter{Limit: 2, Offset: 1}, []string{"3", "2"}, 4},
		{"past the end", AuditFilter{Offset: 9}, []string{}, 4},
	} {
		got, n := SelectAudit(recs, c.f)
		ids := []string{}
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, c.want) || n != c.n {
			t.Errorf("%s: %v (%d), want %v (%d)", c.name, ids, n, c.want, c.n)
		}
	}
}
