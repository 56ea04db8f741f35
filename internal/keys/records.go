package keys

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"
)

// The rules of Service's writes that are the same for every backend: preparing a record for
// create, validating it against what the store holds (asked through the callbacks a backend
// passes, run inside its transaction), applying a patch, authenticating a key once read, and
// selecting a page of keys. A backend keeps only its storage work: reads, writes, indexes and
// transactions. The callbacks may be called again when a backend retries its transaction, so
// every function here is safe to re-run on the same input.

// UserLookup reads a user by id in the caller's transaction; an unknown id is an ENOTFOUND
// error.
type UserLookup func(id string) (*User, error)

// Taken reports whether an index entry for the given value (a host, a key name) is already
// present in the caller's transaction.
type Taken func(value string) (bool, error)

// NameKey is the form of a key name under which it is unique in its domain (case-insensitive,
// strings.ToLower): a backend's name index must key on it, and a rename is one that changes it.
func NameKey(name string) string { return strings.ToLower(name) }

// NewKey is a key prepared for Service.CreateKey by PrepareKey: the record to store (without
// its hash), its key material, and the field failures found before any store access.
type NewKey struct {
	Record    APIKey
	Plaintext Secret
	Hash      string
	Failures  []Failure
}

// PrepareKey prepares k for a create at now, leaving k unchanged: it checks the scopes'
// limits (failures on "scopes") and, within them, normalises their grammar (a malformed scope
// is returned as an EINVALID error); trims and checks the name (failures on "name") and trims
// the description; stores an empty permission as user; checks expires_at is after now
// (failure on "expires_at"); normalises allowed_cidrs and checks rate_limit (failures on
// those fields, docs/limits.md); generates the id, secret and hash (Generate); clears LastUsedAt
// and stamps created_at and updated_at. Any other error is internal (no randomness).
func PrepareKey(k *APIKey, now time.Time) (*NewKey, error) {
	rec := *k
	failures := CheckScopeLimits(rec.Scopes, nil)
	if len(failures) == 0 {
		scopes, err := NormalizeScopes(rec.Scopes)
		if err != nil {
			return nil, err
		}
		rec.Scopes = scopes
	}
	rec.Name, failures = CheckName("name", rec.Name, failures)
	rec.Description = strings.TrimSpace(rec.Description)
	if rec.Permissions == "" {
		rec.Permissions = PermissionUser
	}
	failures = CheckExpiry(rec.ExpiresAt, now, failures)
	failures = prepareLimits(&rec, failures)
	plaintext, id, hash, err := Generate()
	if err != nil {
		return nil, err
	}
	rec.ID, rec.Hash, rec.LastUsedAt = id, "", nil
	rec.CreatedAt, rec.UpdatedAt = now.Unix(), now.Unix()
	return &NewKey{Record: rec, Plaintext: plaintext, Hash: hash, Failures: failures}, nil
}

// Validate completes the validation of n inside the create's transaction: user_id is required
// and must name a user (ReasonRequired, ReasonMissing), the permission must be valid and not
// above that user's level (CheckPermissions), and the name must not be taken in the user's
// domain (ReasonTaken; nameTaken is asked for the name's domain-relative NameKey form only if
// the user exists and the name is otherwise valid). It sets n.Record.AuthorityID to the
// user's domain. It returns EUNPROCESSABLE with every failure, PrepareKey's included, or a
// store error from a callback.
func (n *NewKey) Validate(user UserLookup, nameTaken Taken) error {
	fs := slices.Clip(n.Failures)
	var owner *User
	if n.Record.UserID == "" {
		fs = append(fs, Failure{Field: "user_id", Reason: ReasonRequired})
	} else {
		u, err := user(n.Record.UserID)
		switch {
		case ErrorCode(err) == ENOTFOUND:
			fs = append(fs, Failure{Field: "user_id", Reason: ReasonMissing})
		case err != nil:
			return err
		default:
			owner = u
		}
	}
	fs = CheckPermissions(n.Record.Permissions, owner, fs)
	if owner != nil {
		n.Record.AuthorityID = owner.AuthorityID
		if !HasFailure(fs, "name") {
			if err := checkTaken(&fs, "name", n.Record.Name, nameTaken); err != nil {
				return err
			}
		}
	}
	if len(fs) > 0 {
		return ValidationFailed(fs)
	}
	return nil
}

// checkTaken appends a ReasonTaken failure on field when taken reports value taken.
func checkTaken(fs *[]Failure, field, value string, taken Taken) error {
	yes, err := taken(value)
	if err != nil {
		return err
	}
	if yes {
		*fs = append(*fs, Failure{Field: field, Reason: ReasonTaken})
	}
	return nil
}

// KeyPatch is a KeyUpdate prepared for Service.UpdateKey by PrepareKeyUpdate.
type KeyPatch struct {
	u        KeyUpdate
	scopes   []string
	failures []Failure
	now      time.Time
}

// PrepareKeyUpdate prepares u at now, before any store access: new scopes over a limit are
// failures on "scopes" (kept as given, so that the update fails with 422 whatever its Check
// says), and within the limits a malformed scope is returned as an EINVALID error.
func PrepareKeyUpdate(u KeyUpdate, now time.Time) (*KeyPatch, error) {
	p := &KeyPatch{u: u, now: now}
	if u.Scopes != nil {
		p.scopes = *u.Scopes
		if p.failures = CheckScopeLimits(p.scopes, nil); len(p.failures) == 0 {
			var err error
			if p.scopes, err = NormalizeScopes(p.scopes); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Apply applies the patch to rec, the key as stored (its Hash is kept), inside the update's
// transaction. Only the fields the update sets are checked: the name (CheckName), the
// permission (an empty one means user; CheckPermissions against the key's user, read with
// user, no level cap if the user is gone), expires_at (CheckExpiry), allowed_cidrs and
// rate_limit (NormalizeCIDRs, CheckRateLimit). The update's Check, if
// set, then judges the key before and after (both without hash) and its error is returned as
// is: authorization before validation, so a caller who may not write the key learns nothing
// from its failures. A rename (a change of NameKey) must find the name free (nameTaken,
// ReasonTaken); a key replaced by rotation cannot be renamed nor its expiry lengthened
// (ErrReplaced, checkReplacedUpdate). It returns whether the key was renamed, and
// EUNPROCESSABLE with every failure, Check's error or a store error from a callback; on
// success rec's updated_at is now.
func (p *KeyPatch) Apply(rec *APIKey, user UserLookup, nameTaken Taken) (renamed bool, err error) {
	u := p.u
	before := *rec
	fs := slices.Clip(p.failures)
	if u.Name != nil {
		rec.Name, fs = CheckName("name", *u.Name, fs)
	}
	if u.Description != nil {
		rec.Description = strings.TrimSpace(*u.Description)
	}
	if u.Scopes != nil {
		rec.Scopes = p.scopes
	}
	if u.Permissions != nil {
		rec.Permissions = cmp.Or(*u.Permissions, PermissionUser)
		owner, err := user(rec.UserID)
		if err != nil && ErrorCode(err) != ENOTFOUND {
			return false, err
		}
		fs = CheckPermissions(rec.Permissions, owner, fs)
	}
	if u.ExpiresAt.Set {
		rec.ExpiresAt = u.ExpiresAt.Value
		fs = CheckExpiry(rec.ExpiresAt, p.now, fs)
	}
	fs = p.applyLimits(rec, fs)
	if u.Check != nil {
		before.Hash = ""
		after := *rec
		after.Hash = ""
		if err := u.Check(&before, &after); err != nil {
			return false, err
		}
	}
	renamed = !HasFailure(fs, "name") && NameKey(rec.Name) != NameKey(before.Name)
	if err := checkReplacedUpdate(&before, rec, renamed); err != nil {
		return false, err
	}
	if renamed {
		if err := checkTaken(&fs, "name", rec.Name, nameTaken); err != nil {
			return false, err
		}
	}
	if len(fs) > 0 {
		return false, ValidationFailed(fs)
	}
	rec.UpdatedAt = p.now.Unix()
	return renamed, nil
}

// Authenticate verifies plaintext at now with the record keyForAuth reads (a backend's
// Service.KeyForAuth): a key of the wrong shape (ParseKey) is refused before any store access,
// then the stored hash is compared in constant time (VerifyHash) and the expiry checked. It
// returns ErrUnknownKey (EUNAUTHORIZED: malformed, unknown id, wrong secret, or a key whose
// user or domain is gone, i.e. ENOTFOUND), ErrExpiredKey (EUNAUTHORIZED), or keyForAuth's
// other error as is. The result's key has no hash.
func Authenticate(ctx context.Context, plaintext string, now time.Time,
	keyForAuth func(ctx context.Context, id string) (*APIKey, *User, *Domain, error)) (*AuthResult, error) {
	id, secret, ok := ParseKey(plaintext)
	if !ok {
		return nil, ErrUnknownKey
	}
	k, u, d, err := keyForAuth(ctx, id)
	if ErrorCode(err) == ENOTFOUND {
		return nil, ErrUnknownKey
	}
	if err != nil {
		return nil, err
	}
	if !VerifyHash(id, secret, k.Hash) {
		return nil, ErrUnknownKey
	}
	if k.Expired(now) {
		return nil, ErrExpiredKey
	}
	k.Hash = ""
	return &AuthResult{Key: k, User: u, Domain: d}, nil
}

// SelectKeys is Service.ListKeys's selection from every candidate key (those of f's domain, or
// all): the keys whose name or description contains f.Q (case-insensitive, trimmed; "" keeps
// every key), sorted by CompareByName, and the page f.Offset, f.Limit of them (Limit 0: no
// limit), with the number selected in all. It clears every candidate's Hash.
func SelectKeys(all []*APIKey, f KeyFilter) ([]*APIKey, int) {
	q := strings.ToLower(strings.TrimSpace(f.Q))
	sel := make([]*APIKey, 0, len(all))
	for _, k := range all {
		k.Hash = ""
		if q == "" || strings.Contains(strings.ToLower(k.Name), q) || strings.Contains(strings.ToLower(k.Description), q) {
			sel = append(sel, k)
		}
	}
	slices.SortFunc(sel, func(a, b *APIKey) int { return CompareByName(a.Name, a.ID, b.Name, b.ID) })
	lo := min(max(f.Offset, 0), len(sel))
	hi := len(sel)
	if f.Limit > 0 {
		hi = min(lo+f.Limit, len(sel))
	}
	return slices.Clone(sel[lo:hi]), len(sel)
}

// PrepareDomain returns d prepared for Service.CreateDomain at now, leaving d unchanged:
// normalised by NormalizeDomain (whose field failures it returns), with a new id
// (NewDomainID) and created_at and updated_at set.
func PrepareDomain(d *Domain, now time.Time) (Domain, []Failure) {
	rec := *d
	failures := NormalizeDomain(&rec)
	rec.ID = NewDomainID()
	rec.CreatedAt = now.Unix()
	rec.UpdatedAt = rec.CreatedAt
	return rec, failures
}

// ValidateNewDomain completes the validation of rec, prepared by PrepareDomain with failures,
// inside the create's transaction: a valid host must be free (hostTaken; field "domain",
// ReasonTaken, as PlaceOS reports it rather than a 409). It returns EUNPROCESSABLE with every
// failure, or a store error from hostTaken.
func ValidateNewDomain(rec *Domain, failures []Failure, hostTaken Taken) error {
	fs := slices.Clip(failures)
	if !HasFailure(fs, "domain") {
		if err := checkTaken(&fs, "domain", rec.Domain, hostTaken); err != nil {
			return err
		}
	}
	if len(fs) > 0 {
		return ValidationFailed(fs)
	}
	return nil
}

// PatchDomain is Service.ModifyDomain's rule, inside its transaction: it applies change to a
// copy of old, normalises it (NormalizeDomain), requires a changed host to be free (hostTaken,
// ReasonTaken), keeps old's id and created_at and sets updated_at to now. It returns the
// record to store and whether its host changed; change's error as is, EUNPROCESSABLE, or a
// store error from hostTaken.
func PatchDomain(old *Domain, change func(d *Domain) error, now time.Time, hostTaken Taken) (*Domain, bool, error) {
	rec := *old
	if err := change(&rec); err != nil {
		return nil, false, err
	}
	fs := NormalizeDomain(&rec)
	hostChanged := !HasFailure(fs, "domain") && rec.Domain != old.Domain
	if hostChanged {
		if err := checkTaken(&fs, "domain", rec.Domain, hostTaken); err != nil {
			return nil, false, err
		}
	}
	if len(fs) > 0 {
		return nil, false, ValidationFailed(fs)
	}
	rec.ID, rec.CreatedAt, rec.UpdatedAt = old.ID, old.CreatedAt, now.Unix()
	return &rec, hostChanged, nil
}

// PrepareUser returns u prepared for Service.CreateUser at now, leaving u unchanged: trimmed
// by NormalizeUser (whose field failures it returns; Groups never nil), with a new id
// (NewUserID) and created_at and updated_at set.
func PrepareUser(u *User, now time.Time) (User, []Failure) {
	rec := *u
	failures := NormalizeUser(&rec)
	rec.ID = NewUserID()
	rec.CreatedAt = now.Unix()
	rec.UpdatedAt = rec.CreatedAt
	return rec, failures
}

// ValidateNewUser completes the validation of rec, prepared by PrepareUser with failures,
// inside the create's transaction: authority_id is required (ReasonRequired) and must name a
// domain (domainExists; ReasonMissing). It returns EUNPROCESSABLE with every failure, or a
// store error from domainExists.
func ValidateNewUser(rec *User, failures []Failure, domainExists func(id string) (bool, error)) error {
	fs := slices.Clip(failures)
	if rec.AuthorityID == "" {
		fs = append(fs, Failure{Field: "authority_id", Reason: ReasonRequired})
	} else if ok, err := domainExists(rec.AuthorityID); err != nil {
		return err
	} else if !ok {
		fs = append(fs, Failure{Field: "authority_id", Reason: ReasonMissing})
	}
	if len(fs) > 0 {
		return ValidationFailed(fs)
	}
	return nil
}

// PatchUser is Service.ModifyUser's rule, inside its transaction: it applies change to a copy
// of old (its groups copied too), validates it with NormalizeUserUpdate (a user cannot change
// domain), keeps old's id and created_at and sets updated_at to now. It returns the record to
// store; change's error as is, or EUNPROCESSABLE.
func PatchUser(old *User, change func(u *User) error, now time.Time) (*User, error) {
	rec := *old
	rec.Groups = slices.Clone(old.Groups)
	if err := change(&rec); err != nil {
		return nil, err
	}
	if fs := NormalizeUserUpdate(old, &rec); len(fs) > 0 {
		return nil, ValidationFailed(fs)
	}
	rec.ID, rec.CreatedAt, rec.UpdatedAt = old.ID, old.CreatedAt, now.Unix()
	return &rec, nil
}

// CheckUserDelete runs each check of a user delete (Service.DeleteUser, DeleteDomain) on the
// user u and its keys, whose hashes it clears; the first error is returned as is.
func CheckUserDelete(u *User, ks []*APIKey, check []func(u *User, ks []*APIKey) error) error {
	for _, k := range ks {
		k.Hash = ""
	}
	for _, c := range check {
		if err := c(u, ks); err != nil {
			return err
		}
	}
	return nil
}

// CheckKeyDeletes runs each check of a key delete (Service.DeleteKey) on k, whose hash it
// clears; the first error is returned as is.
func CheckKeyDeletes(k *APIKey, check []func(k *APIKey) error) error {
	k.Hash = ""
	for _, c := range check {
		if err := c(k); err != nil {
			return err
		}
	}
	return nil
}

// MarkUsed sets k's last_used_at to at (Unix seconds) unless it already holds that time or a
// later one, and reports whether it changed: the rule of the batched last_used_at writes.
func (k *APIKey) MarkUsed(at int64) bool {
	if k.LastUsedAt != nil && *k.LastUsedAt >= at {
		return false
	}
	k.LastUsedAt = &at
	return true
}
