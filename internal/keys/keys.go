package keys

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Domain is a PlaceOS authority: the tenant that owns users and, through them, API keys.
// Domain (the host) is stored lower-case and bare (no scheme, port or path) and is unique.
type Domain struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Domain      string `json:"domain"`
	Description string `json:"description"`
	CreatedAt   int64  `json:"created_at"`
	UpdatedAt   int64  `json:"updated_at"`
}

// User is the identity an API key acts as. Its level (see Level) caps the level of its keys.
type User struct {
	ID          string   `json:"id"`
	AuthorityID string   `json:"authority_id"`
	Name        string   `json:"name"`
	Email       string   `json:"email"`
	SysAdmin    bool     `json:"sys_admin"`
	Support     bool     `json:"support"`
	Groups      []string `json:"groups"`
	CreatedAt   int64    `json:"created_at"`
	UpdatedAt   int64    `json:"updated_at"`
}

// Level is the user's own permission level: admin_support if SysAdmin and Support, admin if
// SysAdmin, support if Support, else user.
func (u *User) Level() Permission {
	switch {
	case u.SysAdmin && u.Support:
		return PermissionAdminSupport
	case u.SysAdmin:
		return PermissionAdmin
	case u.Support:
		return PermissionSupport
	default:
		return PermissionUser
	}
}

// Permission is a permission level. Valid values are the four constants below; the zero value
// is invalid (the store treats an empty permission on create as PermissionUser).
type Permission string

// The permission levels, in increasing rank.
const (
	PermissionUser         Permission = "user"
	PermissionSupport      Permission = "support"
	PermissionAdmin        Permission = "admin"
	PermissionAdminSupport Permission = "admin_support"
)

var permissions = [...]Permission{PermissionUser, PermissionSupport, PermissionAdmin, PermissionAdminSupport}

// Rank is the numeric level of p: 0 (user) to 3 (admin_support), or -1 if p is not valid.
func (p Permission) Rank() int {
	for i, q := range permissions {
		if p == q {
			return i
		}
	}
	return -1
}

// Valid reports whether p is one of the four permission levels.
func (p Permission) Valid() bool { return p.Rank() >= 0 }

// UnmarshalJSON accepts, as PlaceOS does, a level name in any case and with or without the
// underscore ("admin_support", "AdminSupport") or an integer 0-3. Other strings and numbers are
// kept as given so that validation can report them (422); JSON null leaves p unchanged; any
// other JSON type is an error. Marshalling writes the plain string.
func (p *Permission) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = parsePermission(s)
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		n, err := strconv.Atoi(string(b))
		if err == nil && n >= 0 && n < len(permissions) {
			*p = permissions[n]
			return nil
		}
		*p = Permission(b)
		return nil
	default:
		return fmt.Errorf("permissions: want a string or an integer, got %.20s", b)
	}
}

func parsePermission(s string) Permission {
	norm := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", ""))
	for _, q := range permissions {
		if norm == strings.ReplaceAll(string(q), "_", "") {
			return q
		}
	}
	if n, err := strconv.Atoi(norm); err == nil && n >= 0 && n < len(permissions) {
		return permissions[n]
	}
	return Permission(s)
}

// APIKey is an API key as the API shows it. The plaintext key exists only once, returned by
// Service.CreateKey; Hash, set only by Service.KeyForAuth, is never marshalled.
type APIKey struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Scopes      []string   `json:"scopes"`
	Permissions Permission `json:"permissions"`
	UserID      string     `json:"user_id"`
	AuthorityID string     `json:"authority_id"`
	CreatedAt   int64      `json:"created_at"`
	UpdatedAt   int64      `json:"updated_at"`
	ExpiresAt   *int64     `json:"expires_at"`
	LastUsedAt  *int64     `json:"last_used_at"`
	// AllowedCIDRs, if not empty, are the only client networks the key may be used from
	// (docs/limits.md); the policy judges them.
	AllowedCIDRs []string `json:"allowed_cidrs"`
	// RateLimit, if set, bounds the requests the key may make on each node (docs/limits.md).
	RateLimit *RateLimit `json:"rate_limit"`
	// RotatedFrom is the id of the key this one replaced by rotation; ReplacedBy the id of the
	// key that replaced this one (docs/keys.md#rotation).
	RotatedFrom string `json:"rotated_from,omitempty"`
	ReplacedBy  string `json:"replaced_by,omitempty"`
	// Hash is hex(HMAC-SHA512(key = secret, message = id)).
	Hash string `json:"-"`
}

// RateLimit is a token bucket: Rate requests per second on average, Burst at once.
type RateLimit struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// Expired reports whether the key has expired at now: expires_at <= now (Unix seconds).
// A key without expires_at never expires.
func (k *APIKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && *k.ExpiresAt <= now.Unix()
}

// NullableInt64 is an optional, nullable value for a partial update: Set false leaves the field
// alone; Set with a nil Value clears it. Its UnmarshalJSON sets Set, so a JSON field that is
// absent stays unset while "null" clears.
type NullableInt64 struct {
	Set   bool
	Value *int64
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullableInt64) UnmarshalJSON(b []byte) error {
	n.Set = true
	n.Value = nil
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n.Value = &v
	return nil
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix followed by n base62 characters from crypto/rand (unbiased).
func newID(prefix string, n int) string {
	out := make([]byte, 0, len(prefix)+n)
	out = append(out, prefix...)
	var buf [32]byte
	for len(out) < cap(out) {
		rand.Read(buf[:]) // never returns an error (crypto/rand, Go 1.24+)
		for _, c := range buf {
			if c < 248 && len(out) < cap(out) { // 248 = 4*62: reject to avoid bias
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out)
}

// NewDomainID returns a new domain id: "authority-" and 14 random base62 characters.
func NewDomainID() string { return newID("authority-", 14) }

// NewUserID returns a new user id: "user-" and 14 random base62 characters.
func NewUserID() string { return newID("user-", 14) }

// CompareByName orders records by name (case-insensitive), then by id: the order of every
// listing of domains, users and keys.
func CompareByName(aName, aID, bName, bID string) int {
	return cmp.Or(strings.Compare(strings.ToLower(aName), strings.ToLower(bName)), strings.Compare(aID, bID))
}
