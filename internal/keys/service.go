package keys

import (
	"context"
	"time"
)

// Service is the store of domains, users and API keys: what the admin API's handlers, the
// caches and the authorizer need of a backend. badgerstore.Store implements it; the conformance
// suite in internal/keys/storetest states its contract as tests, and every backend runs it.
//
// Errors are *Error values with the codes of errors.go, read with ErrorCode; any other error
// is a store fault (EINTERNAL). Every method may also return ctx's error, and every write may
// return ECONFLICT when it kept losing to concurrent writes ("try again") or would change too
// many records at once. Validation failures are EUNPROCESSABLE with one Failure per field, in
// PlaceOS's wording ("is required", "has already been taken", ...); nothing is written then.
// Returned records are copies: changing one changes nothing stored.
//
// A write whose ctx carries an admin-API caller (CallerFrom with a key) first re-reads that
// caller's key and user in its own transaction, and is refused if the key is gone
// (ErrUnknownKey), expired (ErrExpiredKey), or it or its user changed in a way that matters to
// authorization since the request was judged (ErrCallerChanged, ECONFLICT): a request
// authorized before a revocation or a demotion writes nothing after it. A ctx without a
// caller (bootstrap, usage, the CLI's store access) is not rechecked.
type Service interface {
	// CreateDomain validates d, normalises its host (NormalizeHost), gives it an id and
	// timestamps and stores it; on success d holds the stored record.
	// Returns EUNPROCESSABLE if the name or host is missing or invalid, or the host is taken.
	CreateDomain(ctx context.Context, d *Domain) error

	// GetDomain returns the domain with the given id.
	// Returns ENOTFOUND if there is none.
	GetDomain(ctx context.Context, id string) (*Domain, error)

	// DomainByHost returns the domain whose host is host, normalised first (any case, a port
	// or scheme ignored).
	// Returns ENOTFOUND if no domain has that host, or host is not a valid host.
	DomainByHost(ctx context.Context, host string) (*Domain, error)

	// ListDomains returns every domain, sorted by name (case-insensitive) then id.
	ListDomains(ctx context.Context) ([]*Domain, error)

	// ModifyDomain applies change to the stored domain id and stores the result, all in one
	// transaction, validated as in CreateDomain; it returns the stored record. change sees the
	// record it replaces, so concurrent patches of different fields all survive. change may be
	// called more than once (the write is retried when a concurrent one commits first), so it
	// should have no effect but its edit of d. The id and created_at cannot be changed; updated_at is set.
	// Returns ENOTFOUND, EUNPROCESSABLE, or change's own error (nothing is stored then).
	ModifyDomain(ctx context.Context, id string, change func(d *Domain) error) (*Domain, error)

	// DeleteDomain deletes the domain, its users and their keys, all at once: no key of the
	// domain authenticates after it returns. Each check, if any, judges every user of the
	// domain with its keys, as DeleteUser's do, inside the same transaction.
	// Returns ENOTFOUND, a check's error, or ECONFLICT if the cascade is too large for one write.
	DeleteDomain(ctx context.Context, id string, check ...func(u *User, keys []*APIKey) error) error

	// CreateUser validates u, gives it an id and timestamps and stores it in the domain
	// u.AuthorityID; on success u holds the stored record (Groups never nil).
	// Returns EUNPROCESSABLE if the name is missing or too long, the email is missing or has
	// no "@", or authority_id is missing ("is required") or names no domain ("does not
	// exist").
	CreateUser(ctx context.Context, u *User) error

	// GetUser returns the user with the given id.
	// Returns ENOTFOUND if there is none.
	GetUser(ctx context.Context, id string) (*User, error)

	// ListUsers returns the users of the domain authorityID ("" for every domain), sorted by
	// name (case-insensitive) then id. An unknown domain has no users (not an error).
	ListUsers(ctx context.Context, authorityID string) ([]*User, error)

	// ModifyUser applies change to the stored user id and stores the result, all in one
	// transaction, validated as in CreateUser; it returns the stored record. change sees the
	// record it replaces, so a check it makes cannot be raced and concurrent patches of
	// different fields all survive; like ModifyDomain's, change may be called more than once.
	// The id and created_at cannot be changed, and neither can the domain: an AuthorityID
	// left different is EUNPROCESSABLE (field "authority_id", "cannot be changed").
	// Returns ENOTFOUND, EUNPROCESSABLE, or change's own error (nothing is stored then).
	ModifyUser(ctx context.Context, id string, change func(u *User) error) (*User, error)

	// DeleteUser deletes the user and its keys, all at once. Each check, if any, judges the
	// delete inside its transaction, before anything is deleted: it sees the user and its keys
	// (no hashes) as stored, and its error aborts the delete and is returned as is.
	// Returns ENOTFOUND, a check's error, or ECONFLICT if the cascade is too large for one write.
	DeleteUser(ctx context.Context, id string, check ...func(u *User, keys []*APIKey) error) error

	// CreateKey validates k, generates its key material and stores it with the hash only; it
	// returns the plaintext key, which exists nowhere else. On success k holds the stored key
	// (no hash): scopes normalised, an empty permission stored as user, AuthorityID set to the
	// user's domain whatever was given.
	// Returns EINVALID for a malformed scope; EUNPROCESSABLE if the name is missing, too long
	// or taken in the domain (case-insensitive), user_id is missing or names no user, the
	// permission is invalid or above the user's level, expires_at is not in the future, or
	// the scopes break a limit (MaxScopes, MaxScopeLength, MaxScopesLength).
	CreateKey(ctx context.Context, k *APIKey) (Secret, error)

	// GetKey returns the key with the given id, without its hash.
	// Returns ENOTFOUND if there is none.
	GetKey(ctx context.Context, id string) (*APIKey, error)

	// KeyForAuth returns the key with the given id including its Hash, its user and its
	// domain, read at one point in time. It is for verification (Authenticate, caches) and
	// never for a response.
	// Returns ENOTFOUND if the key, its user or its domain is missing.
	KeyForAuth(ctx context.Context, id string) (*APIKey, *User, *Domain, error)

	// ListKeys returns one page of the keys matching f, sorted by name (case-insensitive)
	// then id, without hashes, and the number of keys matching f in all.
	ListKeys(ctx context.Context, f KeyFilter) ([]*APIKey, int, error)

	// UpdateKey applies u to the key id in one transaction and returns the stored key (no
	// hash). The fields it changes are validated as in CreateKey; fields it leaves alone are
	// not re-checked. u.Check, if set, judges the change inside the transaction.
	// Returns ENOTFOUND, EINVALID (a malformed scope), EUNPROCESSABLE, or Check's error.
	UpdateKey(ctx context.Context, id string, u KeyUpdate) (*APIKey, error)

	// DeleteKey deletes the key id; it does not authenticate after DeleteKey returns, and
	// its deletion mark (tombstone.go), written with the delete, keeps it from ever being
	// imported or created again (so do DeleteUser's and DeleteDomain's, for every record
	// they delete). Each check, if any, judges the delete inside its transaction: it sees
	// the key as stored (no hash), and its error aborts the delete and is returned as is.
	// Returns ENOTFOUND if there is none, or a check's error.
	DeleteKey(ctx context.Context, id string, check ...func(k *APIKey) error) error

	// RotateKey replaces the key id by a new key, in one transaction (docs/keys.md#rotation):
	// the new key has the old one's name, description, scopes, permissions, user, limits and
	// expires_at, and rotated_from set; the old key gets expires_at = min(its own, now +
	// r.Overlap) and replaced_by set, and the name's index entry moves to the new key. It
	// returns the new key with its plaintext, which exists nowhere else, and the old key as
	// stored. r.Check, if set, judges the old key inside the transaction.
	// Returns EUNPROCESSABLE for an overlap out of range (field "overlap") or a level above
	// the user's current one (field "permissions"), ENOTFOUND, ECONFLICT for a key already
	// replaced or expired, or Check's error.
	RotateKey(ctx context.Context, id string, r KeyRotation) (*RotatedKey, error)

	// Authenticate verifies a presented key at now: its shape, id, secret (in constant time)
	// and expiry. The result's key has no hash.
	// Returns ErrUnknownKey (EUNAUTHORIZED) for a malformed key, an unknown id, a wrong secret
	// or a key whose user or domain is gone, which are deliberately indistinguishable;
	// ErrExpiredKey (EUNAUTHORIZED) for a key whose expires_at is not after now.
	Authenticate(ctx context.Context, plaintext string, now time.Time) (*AuthResult, error)

	// Import takes over domains, users and keys with their ids (keys with their hashes, so
	// that they work unchanged), all or nothing, in one transaction (docs/import.md): the
	// rules are PrepareImport's and PlanImport's. A record stored with the same fields is left
	// unchanged, so a re-import changes nothing; a record whose id was deleted (its deletion
	// mark, tombstone.go) is a conflict, never brought back; with dryRun nothing is written
	// and the result says what would be. The import writes one audit record (action import).
	// Returns EUNPROCESSABLE with one failure per bad row (field "line N"), nothing written;
	// ErrImportConflicts (ECONFLICT) with the result listing the conflicts, nothing written;
	// ECONFLICT if the import is too large for one transaction of the backend.
	Import(ctx context.Context, b *ImportBatch, dryRun bool) (*ImportResult, error)

	// Counts returns the number of domains, users and keys stored.
	Counts(ctx context.Context) (domains, users, keys int)

	// ListAudit returns one page of the audit records matching f, newest first, and the
	// number matching in all (docs/audit.md). Every write above (create, modify, update,
	// delete, rotate, an import that writes) stores exactly one record, in the write's own
	// transaction (NewAuditRecord, with the caller and request id of ctx): a write that fails
	// stores none, a cascade is one record. RecordUse is no admin write and stores none.
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditRecord, int, error)

	// PruneAudit deletes the audit records beyond r, the oldest first, and returns how many;
	// it stores no record of its own.
	PruneAudit(ctx context.Context, r AuditRetention) (int, error)

	// OnChange registers fn to be called, after the commit and before the write returns, for
	// every record written or deleted, each record of a cascade included, so that caches
	// never serve what a returned write changed.
	OnChange(fn func(Change))
}

// Change reports one committed write or delete, for caches to invalidate: Kind is "domain",
// "user" or "key" and ID the record's id.
type Change struct {
	Kind string
	ID   string
}

// Change kinds.
const (
	KindDomain = "domain"
	KindUser   = "user"
	KindKey    = "key"
)

// AuthResult is a successfully authenticated key with its user and the key's domain.
type AuthResult struct {
	Key    *APIKey
	User   *User
	Domain *Domain
}

// KeyFilter selects keys for ListKeys. AuthorityID "" means every domain; Q, if not empty, is a
// case-insensitive substring of the name or the description; Limit 0 means no limit.
type KeyFilter struct {
	AuthorityID string
	Q           string
	Limit       int
	Offset      int
}

// KeyUpdate is a partial update of a key: nil fields (and an unset ExpiresAt) are left alone.
// ExpiresAt set with a nil Value makes the key never expire.
type KeyUpdate struct {
	Name        *string
	Description *string
	Scopes      *[]string
	Permissions *Permission
	ExpiresAt   NullableInt64
	// AllowedCIDRs and RateLimit set with a nil Value clear the key's allow-list and rate
	// limit (docs/limits.md); an empty list clears the allow-list too.
	AllowedCIDRs Nullable[[]string]
	RateLimit    Nullable[RateLimit]

	// Check, if set, is called inside the update's transaction with the key as stored and as
	// it would be stored after the update (scopes normalised, no hash); an error aborts the
	// update and is returned as is. The admin API's minting cap runs here: judged in the
	// transaction, against the record it replaces, it cannot be raced by a concurrent update
	// of the same key (that one conflicts, and this one is retried and judged again).
	Check func(before, after *APIKey) error
}
