package keys

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPermission(t *testing.T) {
	tests := []struct {
		p     Permission
		rank  int
		valid bool
	}{
		{PermissionUser, 0, true},
		{PermissionSupport, 1, true},
		{PermissionAdmin, 2, true},
		{PermissionAdminSupport, 3, true},
		{"", -1, false},
		{"Admin", -1, false},
		{"root", -1, false},
	}
	for _, tt := range tests {
		if got := tt.p.Rank(); got != tt.rank {
			t.Errorf("%q.Rank() = %d, want %d", tt.p, got, tt.rank)
		}
		if got := tt.p.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v, want %v", tt.p, got, tt.valid)
		}
	}
}

func TestPermissionUnmarshalJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    Permission
		wantErr bool
	}{
		{`"user"`, PermissionUser, false},
		{`"ADMIN"`, PermissionAdmin, false},
		{`"AdminSupport"`, PermissionAdminSupport, false},
		{`"admin_support"`, PermissionAdminSupport, false},
		{`0`, PermissionUser, false},
		{`1`, PermissionSupport, false},
		{`3`, PermissionAdminSupport, false},
		{`"2"`, PermissionAdmin, false},
		{`7`, "7", false},         // kept, so validation reports it (422)
		{`"root"`, "root", false}, // idem
		{`null`, "unchanged", false},
		{`true`, "unchanged", true},
		{`{}`, "unchanged", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := Permission("unchanged")
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUserLevel(t *testing.T) {
	tests := []struct {
		sysAdmin, support bool
		want              Permission
	}{
		{false, false, PermissionUser},
		{false, true, PermissionSupport},
		{true, false, PermissionAdmin},
		{true, true, PermissionAdminSupport},
	}
	for _, tt := range tests {
		u := &User{SysAdmin: tt.sysAdmin, Support: tt.support}
		if got := u.Level(); got != tt.want {
			t.Errorf("Level(sys_admin=%v, support=%v) = %q, want %q", tt.sysAdmin, tt.support, got, tt.want)
		}
	}
}

func TestAPIKeyJSON(t *testing.T) {
	exp := int64(1700000000)
	k := APIKey{
		ID: "0123456789abcdef0123456789abcdef", Name: "n", Scopes: []string{"public"},
		Permissions: PermissionAdmin, UserID: "user-1", AuthorityID: "authority-1",
		CreatedAt: 1, UpdatedAt: 2, ExpiresAt: &exp, Hash: "deadbeef",
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0123456789abcdef0123456789abcdef","name":"n","description":"","scopes":["public"],` +
		`"permissions":"admin","user_id":"user-1","authority_id":"authority-1","created_at":1,` +
		`"updated_at":2,"expires_at":1700000000,"last_used_at":null,"allowed_cidrs":null,"rate_limit":null}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	// The stored record keeps the hash: internal/badgerstore TestKeyRecordJSON.
}

func TestAPIKeyExpired(t *testing.T) {
	now := time.Unix(1000, 0)
	at := func(v int64) *int64 { return &v }
	tests := []struct {
		exp  *int64
		want bool
	}{{nil, false}, {at(999), true}, {at(1000), true}, {at(1001), false}}
	for _, tt := range tests {
		if got := (&APIKey{ExpiresAt: tt.exp}).Expired(now); got != tt.want {
			t.Errorf("Expired(%v) = %v, want %v", tt.exp, got, tt.want)
		}
	}
}

func TestNullableInt64(t *testing.T) {
	var v struct {
		A NullableInt64 `json:"a"`
		B NullableInt64 `json:"b"`
		C NullableInt64 `json:"c"`
	}
	if err := json.Unmarshal([]byte(`{"a":null,"b":42}`), &v); err != nil {
		t.Fatal(err)
	}
	if !v.A.Set || v.A.Value != nil {
		t.Errorf("null: %+v", v.A)
	}
	if !v.B.Set || v.B.Value == nil || *v.B.Value != 42 {
		t.Errorf("42: %+v", v.B)
	}
	if v.C.Set {
		t.Errorf("absent: %+v", v.C)
	}
}

func TestNewID(t *testing.T) {
	id := NewDomainID()
	if !strings.HasPrefix(id, "authority-") || len(id) != len("authority-")+14 {
		t.Errorf("NewDomainID() = %q", id)
	}
	if id := NewUserID(); !strings.HasPrefix(id, "user-") || strings.Trim(id[5:], base62) != "" {
		t.Errorf("NewUserID() = %q", id)
	}
}
