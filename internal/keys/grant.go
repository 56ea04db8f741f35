package keys

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The minting cap (docs/keys.md#the-minting-cap: no key mints a key stronger than itself): a
// key created or changed through the admin API may hold no more than the key that writes it.
// PlaceOS lets any admin key mint anything; keyauthz does not, so that a key scoped to api_keys
// alone cannot turn itself, or a new key, into a public one.

// Scope names with a meaning of their own.
const (
	// ScopePublic is the wildcard: public grants every scoped route, public.read every read,
	// public.write every write (docs/policy-contract.md#public).
	ScopePublic = "public"
	// ScopeGuest is the bare scope that opens the routes the table marks guest, for the ids in
	// the user's groups only.
	ScopeGuest = "guest"
)

// ScopesCover reports whether the scopes held cover the scope want, that is whether a key
// holding them already has every right a key holding want would have:
//
//   - public covers every scope;
//   - x covers x, x.read and x.write;
//   - x.read covers x.read, x.write covers x.write;
//   - public.read covers every *.read, public.write every *.write;
//   - a bare x (other than guest) is also covered by whatever covers both x.read and x.write,
//     since several entries for one resource add up (docs/policy-contract.md#scopes).
//
// Suffixes compare case-insensitively, resources exactly, as the policy compares them.
//
// Bare guest is covered by guest and by whatever covers public: keyauthz deliberately lets
// public cover it too (docs/keys.md#the-minting-cap): guest opens only routes that the table
// also opens to their own scopes (systems, metadata, root), and public grants those on every id
// with no role restriction, so a guest key is strictly weaker than a public one. Refusing guest
// to a public admin (the bootstrap key) would make guest keys impossible to provision and gain
// no safety. guest is not a resource with reads and writes, so guest.read and guest.write do
// not add up to it.
func ScopesCover(held []string, want string) bool {
	resource, access := splitScope(want)
	if holds(held, ScopePublic, "") || holds(held, resource, "") {
		return true
	}
	if access != "" {
		return holds(held, resource, access) || holds(held, ScopePublic, access)
	}
	if resource == ScopeGuest {
		return ScopesCover(held, ScopePublic)
	}
	return ScopesCover(held, resource+".read") && ScopesCover(held, resource+".write")
}

// holds reports whether held contains resource with access ("" for the bare scope), the
// suffix compared case-insensitively.
func holds(held []string, resource, access string) bool {
	for _, h := range held {
		if r, a := splitScope(h); r == resource && a == access {
			return true
		}
	}
	return false
}

// splitScope splits a scope into its resource and its lower-cased access suffix ("" if none).
func splitScope(s string) (resource, access string) {
	resource, access, _ = strings.Cut(s, ".")
	return resource, strings.ToLower(access)
}

// CheckGrant returns an EFORBIDDEN error unless a caller holding heldScopes at level heldLevel
// (its effective level: the key's, capped at its user's) may write a key with scopes and
// level: level must not be above heldLevel and every scope must be covered (ScopesCover). An
// invalid heldLevel grants nothing; an invalid level is left to validation (422). The error
// names the first scope or the level refused.
func CheckGrant(heldScopes []string, heldLevel Permission, scopes []string, level Permission) error {
	scope, levelAbove := exceeds(heldScopes, heldLevel, scopes, level)
	switch {
	case scope != "":
		return Errorf(EFORBIDDEN, "cannot grant scope %s: the calling key does not hold it", scope)
	case levelAbove:
		return Errorf(EFORBIDDEN, "cannot grant permissions %s: above the calling key's %s", level, levelName(heldLevel))
	}
	return nil
}

// exceeds returns the first of scopes that heldScopes do not cover ("" if none), and whether
// level is above heldLevel.
func exceeds(heldScopes []string, heldLevel Permission, scopes []string, level Permission) (scope string, levelAbove bool) {
	for _, s := range scopes {
		if !ScopesCover(heldScopes, s) {
			return s, false
		}
	}
	return "", level.Valid() && level.Rank() > heldLevel.Rank()
}

// levelName names a level for a message; an invalid one (no caller) reads as "none".
func levelName(p Permission) string {
	if !p.Valid() {
		return "none"
	}
	return string(p)
}

// Caller is who a request to the admin API comes from: the authenticated key and its user, and
// the effective permission level the policy computed (the key's, capped at the user's).
type Caller struct {
	Key         *APIKey
	User        *User
	Permissions Permission
}

type callerKey struct{}

// ContextWithCaller returns ctx carrying c; the authorization middleware sets it.
func ContextWithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller stored in ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// DomainID is the caller's domain: its key's (the policy has checked it is the request
// host's), or "" without a key.
func (c *Caller) DomainID() string {
	if c == nil || c.Key == nil {
		return ""
	}
	return c.Key.AuthorityID
}

// IsAdmin reports whether the caller's effective level is admin or above: the level at which
// the admin API is platform-wide (docs/http-api.md#who-may-call-it) and a user's flags and
// groups may be changed.
func (c *Caller) IsAdmin() bool {
	return c != nil && c.Permissions.Rank() >= PermissionAdmin.Rank()
}

// CheckMint returns an EFORBIDDEN error unless the caller may mint k as it will be stored: its
// scopes and level (CheckGrant against the caller's key scopes and effective level), its
// lifetime (a caller whose key expires may mint only a key that expires too, no later than
// it does) and its networks (a caller whose key has an allow-list may mint only a key whose
// allow-list lies within it, see networksWithin). A nil caller (or one without a key) may mint
// nothing.
func (c *Caller) CheckMint(k *APIKey) error {
	held, level := c.holds()
	if err := CheckGrant(held, level, k.Scopes, cmp.Or(k.Permissions, PermissionUser)); err != nil {
		return err
	}
	if exp := c.expiresAt(); outlives(k.ExpiresAt, exp) {
		return Errorf(EFORBIDDEN, "cannot grant a key that outlives the calling key (it expires at %d)", *exp)
	}
	if net, ok := c.networksWithin(k.AllowedCIDRs); !ok {
		return Errorf(EFORBIDDEN, "cannot grant a key usable from %s: the calling key is allowed only from %s", net, strings.Join(c.Key.AllowedCIDRs, ", "))
	}
	return nil
}

// networksWithin reports whether a key with the allow-list cidrs could be used only from
// networks the caller's key may be used from; if not, it names the first network outside
// ("any network" for an empty list). A caller key without an allow-list holds every network.
// Without this, a key confined to the office network could mint an unconfined one and use it
// from anywhere (docs/limits.md). cidrs are compared after NormalizeCIDRs; an entry that does
// not parse is left to validation (422).
func (c *Caller) networksWithin(cidrs []string) (string, bool) {
	if c == nil || c.Key == nil || len(c.Key.AllowedCIDRs) == 0 {
		return "", true
	}
	if len(cidrs) == 0 {
		return "any network", false
	}
	for _, s := range cidrs {
		want, ok := parseNetwork(strings.TrimSpace(s))
		if !ok {
			continue
		}
		if !slices.ContainsFunc(c.Key.AllowedCIDRs, func(h string) bool {
			have, ok := parseNetwork(h)
			return ok && have.Bits() <= want.Bits() && have.Contains(want.Addr())
		}) {
			return want.String(), false
		}
	}
	return "", true
}

// CheckKeyChange returns an EFORBIDDEN error unless the caller may change the key before into
// after: it must be able to mint both. Checking after alone would stop a key from being
// widened; checking before too stops a caller from touching (renaming, narrowing, re-dating)
// a key stronger than itself, and names the real reason when the update grants nothing new.
// A key that outlives the calling key counts as stronger.
func (c *Caller) CheckKeyChange(before, after *APIKey) error {
	if err := c.checkKey("change", before); err != nil {
		return err
	}
	return c.CheckMint(after)
}

// CheckKeyDelete returns an EFORBIDDEN error unless the caller may delete k: as for a change,
// the caller must be able to mint k (scopes, level and lifetime), so that no key deletes a
// stronger one. It is the Check of the admin API's deletes, run inside the store transaction.
func (c *Caller) CheckKeyDelete(k *APIKey) error {
	return c.checkKey("delete", k)
}

// checkKey is the "before" half of the minting cap: the caller must be able to mint k as it
// is. verb ("change", "delete") is for the message.
func (c *Caller) checkKey(verb string, k *APIKey) error {
	if why := c.stronger(k); why != "" {
		return Errorf(EFORBIDDEN, "cannot %s key %s: %s", verb, k.ID, why)
	}
	return nil
}

// stronger says why k is stronger than the caller's key ("it holds scope ..."), or "" if the
// caller could mint k.
func (c *Caller) stronger(k *APIKey) string {
	held, level := c.holds()
	switch scope, levelAbove := exceeds(held, level, k.Scopes, k.Permissions); {
	case scope != "":
		return fmt.Sprintf("it holds scope %s, which the calling key does not hold", scope)
	case levelAbove:
		return fmt.Sprintf("its permissions %s are above the calling key's %s", k.Permissions, levelName(level))
	}
	if exp := c.expiresAt(); outlives(k.ExpiresAt, exp) {
		return fmt.Sprintf("it outlives the calling key, which expires at %d", *exp)
	}
	if net, ok := c.networksWithin(k.AllowedCIDRs); !ok {
		return fmt.Sprintf("it may be used from %s, outside the calling key's networks", net)
	}
	return ""
}

// CheckUserChange returns an EFORBIDDEN error unless the caller may change the user before
// into after (before nil: create it; after nil: delete it). Both levels must be at most the
// caller's effective level: an admin cannot create, change or delete a user above its own
// level, nor raise one above it. Demoting or deleting a user narrows or removes its keys,
// so this is the users' half of "no key neutralises a stronger one". A deleted user's keys
// are checked too, each as CheckKeyDelete does.
//
// Self-service is not judged here: a caller's change of its own name and email is allowed by
// the caller (see internal/server handleUpdateUser) whatever its user's level.
func (c *Caller) CheckUserChange(before, after *User, keys []*APIKey) error {
	_, level := c.holds()
	verb := "change"
	switch {
	case before == nil:
		verb = "create"
	case after == nil:
		verb = "delete"
	}
	if before != nil && before.Level().Rank() > level.Rank() {
		return Errorf(EFORBIDDEN, "cannot %s user %s: its level %s is above the calling key's %s", verb, before.ID, before.Level(), levelName(level))
	}
	if after != nil && after.Level().Rank() > level.Rank() {
		return Errorf(EFORBIDDEN, "cannot give a user level %s: above the calling key's %s", after.Level(), levelName(level))
	}
	for _, k := range keys {
		if why := c.stronger(k); why != "" {
			return Errorf(EFORBIDDEN, "cannot %s user %s with key %s: %s", verb, before.ID, k.ID, why)
		}
	}
	return nil
}

// outlives reports whether a key expiring at exp outlives a calling key expiring at held
// (nil: never expires): never, when the calling key does not expire.
func outlives(exp, held *int64) bool {
	return held != nil && (exp == nil || *exp > *held)
}

// holds returns the caller's key's scopes and its effective level; nothing for a nil caller
// or one without a key.
func (c *Caller) holds() ([]string, Permission) {
	if c == nil || c.Key == nil {
		return nil, ""
	}
	return c.Key.Scopes, c.Permissions
}

// expiresAt is the caller's key's expiry (nil: never, or no key: holds grants nothing then).
func (c *Caller) expiresAt() *int64 {
	if c == nil || c.Key == nil {
		return nil
	}
	return c.Key.ExpiresAt
}

// ErrCallerChanged is the 409 of a write whose caller's key or user changed (scopes,
// permissions, expires_at, allowed_cidrs, sys_admin, support) after the request was authorized.
var ErrCallerChanged = &Error{Code: ECONFLICT, Message: "the calling key or its user changed during the request; try again"}

// RecheckCaller is the rule every store applies inside a write transaction made for a caller
// (docs/security.md#admin-api-writes): read reads a key and a user by id in that transaction
// (ENOTFOUND when absent), and the write may go on only while the caller's key and user are as
// they were when the request was authorized. It returns ErrUnknownKey if the key or its user is
// gone, ErrExpiredKey if the key has expired at now, ErrCallerChanged if the key's scopes,
// permissions, expires_at, allowed_cidrs or user, or the user's sys_admin or support, differ
// (each decides what the caller may do or mint); nil for a nil
// caller or one without a key (a write keyauthz makes itself).
func RecheckCaller(caller *Caller, now time.Time, getKey func(id string) (*APIKey, error), getUser func(id string) (*User, error)) error {
	if caller == nil || caller.Key == nil {
		return nil
	}
	k, err := getKey(caller.Key.ID)
	if ErrorCode(err) == ENOTFOUND {
		return ErrUnknownKey
	}
	if err != nil {
		return err
	}
	if k.Expired(now) {
		return ErrExpiredKey
	}
	u, err := getUser(k.UserID)
	if ErrorCode(err) == ENOTFOUND {
		return ErrUnknownKey
	}
	if err != nil {
		return err
	}
	snap := caller.Key
	if !slices.Equal(k.Scopes, snap.Scopes) || k.Permissions != snap.Permissions || !sameExpiry(k.ExpiresAt, snap.ExpiresAt) ||
		!slices.Equal(k.AllowedCIDRs, snap.AllowedCIDRs) ||
		k.UserID != snap.UserID || caller.User == nil || u.ID != caller.User.ID ||
		u.SysAdmin != caller.User.SysAdmin || u.Support != caller.User.Support {
		return ErrCallerChanged
	}
	return nil
}

func sameExpiry(a, b *int64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
