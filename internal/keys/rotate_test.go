package keys

import (
	"testing"
	"time"
)

func TestParseOverlap(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", DefaultOverlap, true},
		{"24h", 24 * time.Hour, true},
		{"0s", 0, true},
		{"0", 0, true},
		{"90m", 90 * time.Minute, true},
		{"720h", MaxOverlap, true},
		{"720h0m1s", 0, false},
		{"-1s", 0, false},
		{"1d", 0, false},
		{"soon", 0, false},
		{"24", 0, false},
	} {
		got, err := ParseOverlap(tt.in)
		switch {
		case tt.ok && (err != nil || got != tt.want):
			t.Errorf("ParseOverlap(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		case !tt.ok && (ErrorCode(err) != EUNPROCESSABLE || !HasFailure(ErrorFailures(err), "overlap")):
			t.Errorf("ParseOverlap(%q) = %s, %v; want a failure on overlap", tt.in, got, err)
		}
	}
}

func TestRotationApply(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	in := func(d time.Duration) *int64 { v := now.Add(d).Unix(); return &v }
	admin := &User{ID: "u1", SysAdmin: true}
	plain := &User{ID: "u1"}
	for _, tt := range []struct {
		name    string
		key     APIKey
		user    *User
		overlap time.Duration
		code    string
		oldExp  *int64 // the old key's expires_at after
	}{
		{"never expiring", APIKey{}, admin, time.Hour, "", in(time.Hour)},
		{"expires after the overlap", APIKey{ExpiresAt: in(48 * time.Hour)}, admin, time.Hour, "", in(time.Hour)},
		{"expires within the overlap", APIKey{ExpiresAt: in(time.Minute)}, admin, time.Hour, "", in(time.Minute)},
		{"overlap zero", APIKey{}, admin, 0, "", in(0)},
		{"expired", APIKey{ExpiresAt: in(0)}, admin, time.Hour, ECONFLICT, nil},
		{"replaced", APIKey{ReplacedBy: "x"}, admin, time.Hour, ECONFLICT, nil},
		{"above the user", APIKey{Permissions: PermissionAdmin}, plain, time.Hour, EUNPROCESSABLE, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PrepareRotation(KeyRotation{Overlap: tt.overlap}, now)
			if err != nil {
				t.Fatal(err)
			}
			old := tt.key
			old.ID, old.Name, old.UserID, old.Hash = "old", "k", "u1", "h"
			old.Scopes, old.AllowedCIDRs, old.RateLimit = []string{"zones"}, []string{"10.0.0.0/8"}, &RateLimit{Rate: 1, Burst: 2}
			if old.Permissions == "" {
				old.Permissions = PermissionUser
			}
			orig := old
			rec, err := p.Apply(&old, func(string) (*User, error) { return tt.user, nil })
			if ErrorCode(err) != tt.code {
				t.Fatalf("Apply: %v, want code %q", err, tt.code)
			}
			if err != nil {
				if old.ExpiresAt != orig.ExpiresAt || old.ReplacedBy != orig.ReplacedBy {
					t.Errorf("a refused Apply changed the old key: %+v", old)
				}
				return
			}
			if rec.Hash != "" || rec.RotatedFrom != "old" || rec.ReplacedBy != "" || rec.Name != "k" || rec.CreatedAt != now.Unix() ||
				!sameExpiry(rec.ExpiresAt, orig.ExpiresAt) || rec.RateLimit == old.RateLimit || &rec.Scopes[0] == &old.Scopes[0] {
				t.Errorf("new key = %+v", rec)
			}
			if old.ReplacedBy != rec.ID || old.Hash != "h" || !sameExpiry(old.ExpiresAt, tt.oldExp) || old.UpdatedAt != now.Unix() {
				t.Errorf("old key = %+v, want replaced_by %s and expires_at %d", old, rec.ID, *tt.oldExp)
			}
			if got := KeyState(&old, now); tt.overlap > 0 && got != StateRotating {
				t.Errorf("old key's state = %s, want rotating", got)
			}
			if got := KeyState(&old, now.Add(tt.overlap)); got != StateExpired {
				t.Errorf("old key's state after the overlap = %s, want expired", got)
			}
			if got := KeyState(rec, now); got != StateActive {
				t.Errorf("new key's state = %s, want active", got)
			}
		})
	}
}
