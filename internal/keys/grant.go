package keys

import "strings"

// The minting cap (design §4, "No key mints a key stronger than itself"): a key created or
// changed through the admin API may hold no more than the key that writes it. PlaceOS lets any
// admin key mint anything; keyauthz does not, so that a key scoped to api_keys alone cannot
// turn itself, or a new key, into a public one.

// Scope names with a meaning of their own.
const (
	// ScopePublic is the wildcard: public grants every scoped route, public.read every read,
	// public.write every write (design §4).
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
//     since several entries for one resource add up (design §4).
//
// Suffixes compare case-insensitively, resources exactly, as the policy compares them.
//
// Bare guest is covered by guest and by whatever covers public. Design §4 says "guest only by
// guest"; keyauthz deliberately lets public cover it too: guest opens only routes that the
// table also opens to their own scopes (systems, metadata, root), and public grants those on
// every id with no role restriction, so a guest key is strictly weaker than a public one.
// Refusing guest to a public admin (the bootstrap key) would make guest keys impossible to
// provision and gain no safety. guest is not a resource with reads and writes, so guest.read
// and guest.write do not add up to it.
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

// IsAdmin reports whether the caller's effective level is admin or above: the level at which
// the admin API is platform-wide (design §6) and a user's flags and groups may be changed.
func (c *Caller) IsAdmin() bool {
	return c != nil && c.Permissions.Rank() >= PermissionAdmin.Rank()
}

// CheckGrant is CheckGrant for this caller's key scopes and effective level; a nil caller (or
// one without a key) may grant nothing.
func (c *Caller) CheckGrant(scopes []string, level Permission) error {
	held, level0 := c.holds()
	return CheckGrant(held, level0, scopes, level)
}

// CheckKeyChange returns an EFORBIDDEN error unless the caller may change the key before into
// after: it must be able to mint both. Checking after alone would stop a key from being
// widened; checking before too stops a caller from touching (renaming, narrowing, re-dating)
// a key stronger than itself, and names the real reason when the update grants nothing new.
func (c *Caller) CheckKeyChange(before, after *APIKey) error {
	held, level := c.holds()
	switch scope, levelAbove := exceeds(held, level, before.Scopes, before.Permissions); {
	case scope != "":
		return Errorf(EFORBIDDEN, "cannot change key %s: it holds scope %s, which the calling key does not hold", before.ID, scope)
	case levelAbove:
		return Errorf(EFORBIDDEN, "cannot change key %s: its permissions %s are above the calling key's %s", before.ID, before.Permissions, levelName(level))
	}
	return CheckGrant(held, level, after.Scopes, after.Permissions)
}

// holds returns the caller's key's scopes and its effective level; nothing for a nil caller
// or one without a key.
func (c *Caller) holds() ([]string, Permission) {
	if c == nil || c.Key == nil {
		return nil, ""
	}
	return c.Key.Scopes, c.Permissions
}
