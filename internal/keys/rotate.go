package keys

import (
	"slices"
	"time"
)

// Rotation (docs/keys.md#rotation): a key is replaced by a new one with the same name,
// description, scopes, user, level, limits and expiry, and the old key keeps working for an
// overlap, never past its own expiry, so that the clients holding it can move to the new one
// without a moment in which neither works. The rule is here, the same for every backend; a
// backend reads the old key, writes both records and moves the name index, in one
// transaction.

// Overlap bounds: the default, when a rotation names none, and the longest allowed. An overlap
// of 0 ends the old key at once.
const (
	DefaultOverlap = 24 * time.Hour
	MaxOverlap     = 30 * 24 * time.Hour
)

// ReasonOverlap is the validation failure of an overlap out of range or not a duration.
const ReasonOverlap = `must be a duration from 0s to 720h (30 days), such as "24h"`

// ParseOverlap reads an overlap as a Go duration ("24h", "90m", "0s"); "" is DefaultOverlap.
// A string that is not a duration, or one below 0 or above MaxOverlap, is EUNPROCESSABLE on
// the field "overlap".
func ParseOverlap(s string) (time.Duration, error) {
	if s == "" {
		return DefaultOverlap, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ValidationFailed([]Failure{{Field: "overlap", Reason: ReasonOverlap}})
	}
	return d, CheckOverlap(d)
}

// CheckOverlap returns EUNPROCESSABLE (field "overlap") unless 0 <= d <= MaxOverlap.
func CheckOverlap(d time.Duration) error {
	if d < 0 || d > MaxOverlap {
		return ValidationFailed([]Failure{{Field: "overlap", Reason: ReasonOverlap}})
	}
	return nil
}

// KeyRotation is a request to Service.RotateKey.
type KeyRotation struct {
	// Overlap is how long the old key keeps working after the rotation (never past its own
	// expiry): 0 to MaxOverlap. The caller chooses the default (DefaultOverlap in the API).
	Overlap time.Duration
	// Check, if set, is called inside the rotation's transaction with the old key as stored
	// (no hash) before anything is written; an error aborts the rotation and is returned as
	// is. The admin API's minting cap runs here, as UpdateKey's Check: the new key is the old
	// one's copy, so the caller must be able to mint the old key as it is.
	Check func(old *APIKey) error
}

// RotatedKey is the result of a rotation: the new key (no hash) with its plaintext, which
// exists nowhere else, and the old key as now stored (no hash).
type RotatedKey struct {
	Key       *APIKey
	Plaintext Secret
	Old       *APIKey
}

// ErrReplaced is the 409 of a write that a replaced key cannot take: a second rotation, or a
// rename (its name belongs to the key that replaced it).
func ErrReplaced(k *APIKey) *Error {
	return Errorf(ECONFLICT, "key %s was replaced by key %s in a rotation", k.ID, k.ReplacedBy)
}

// Rotation is a KeyRotation prepared by PrepareRotation: its key material is made once, before
// the transaction, so that a retried transaction stores the key whose plaintext is returned.
type Rotation struct {
	r         KeyRotation
	now       time.Time
	id, hash  string
	plaintext Secret
}

// PrepareRotation prepares r at now: it checks the overlap (CheckOverlap) and generates the
// new key's id, secret and hash (Generate).
func PrepareRotation(r KeyRotation, now time.Time) (*Rotation, error) {
	if err := CheckOverlap(r.Overlap); err != nil {
		return nil, err
	}
	plaintext, id, hash, err := Generate()
	if err != nil {
		return nil, err
	}
	return &Rotation{r: r, now: now, id: id, hash: hash, plaintext: plaintext}, nil
}

// Hash is the new key's hash, for the backend to store with the record Apply returns.
func (p *Rotation) Hash() string { return p.hash }

// Apply is the rotation's rule inside the backend's transaction. old is the key as stored (its
// Hash is kept; old is changed in place into the record to store); user reads its user. It
// refuses a key already replaced (ErrReplaced, ECONFLICT) or expired at now (ECONFLICT: there
// is nothing left to overlap; create a new key), then runs the Check (its error as is), then
// requires the key's level to be within its user's current level, as a create would
// (EUNPROCESSABLE on "permissions"). On success it returns the new record (no hash) and old
// holds the old key with expires_at = min(own, now + overlap), replaced_by set and updated_at
// now. The new key has old's name, description, scopes, permissions, user, domain, limits and
// expires_at, rotated_from set, no last use, and created_at and updated_at now.
func (p *Rotation) Apply(old *APIKey, user UserLookup) (*APIKey, error) {
	if old.ReplacedBy != "" {
		return nil, ErrReplaced(old)
	}
	if old.Expired(p.now) {
		return nil, Errorf(ECONFLICT, "key %s has expired: there is nothing to rotate, create a new key", old.ID)
	}
	if p.r.Check != nil {
		view := *old
		view.Hash = ""
		if err := p.r.Check(&view); err != nil {
			return nil, err
		}
	}
	owner, err := user(old.UserID)
	if err != nil && ErrorCode(err) != ENOTFOUND {
		return nil, err
	}
	if fs := CheckPermissions(old.Permissions, owner, nil); len(fs) > 0 {
		return nil, ValidationFailed(fs)
	}

	rec := *old
	rec.ID, rec.Hash = p.id, ""
	rec.RotatedFrom, rec.ReplacedBy = old.ID, ""
	rec.CreatedAt, rec.UpdatedAt, rec.LastUsedAt = p.now.Unix(), p.now.Unix(), nil
	rec.Scopes = slices.Clone(old.Scopes)
	rec.AllowedCIDRs = slices.Clone(old.AllowedCIDRs)
	if old.ExpiresAt != nil {
		rec.ExpiresAt = new(int64)
		*rec.ExpiresAt = *old.ExpiresAt
	}
	if old.RateLimit != nil {
		rl := *old.RateLimit
		rec.RateLimit = &rl
	}

	end := p.now.Add(p.r.Overlap).Unix()
	if old.ExpiresAt == nil || *old.ExpiresAt > end {
		old.ExpiresAt = &end
	}
	old.ReplacedBy = rec.ID
	old.UpdatedAt = p.now.Unix()
	return &rec, nil
}

// Result returns the RotatedKey of the stored new and old records, their hashes cleared.
func (p *Rotation) Result(rec, old *APIKey) *RotatedKey {
	n, o := *rec, *old
	n.Hash, o.Hash = "", ""
	return &RotatedKey{Key: &n, Plaintext: p.plaintext, Old: &o}
}

// Key states, computed at read time (KeyState) for the API's "state" field.
const (
	StateActive   = "active"
	StateRotating = "rotating"
	StateExpired  = "expired"
)

// KeyState is k's state at now: expired once expires_at <= now; rotating while a key that was
// replaced by rotation still works (its overlap); active otherwise.
func KeyState(k *APIKey, now time.Time) string {
	switch {
	case k.Expired(now):
		return StateExpired
	case k.ReplacedBy != "":
		return StateRotating
	default:
		return StateActive
	}
}

// checkReplacedUpdate is KeyPatch.Apply's rule for a key replaced by rotation (before, as
// stored, changed into rec): its name belongs to the key that replaced it, so it cannot be
// renamed; and its overlap cannot be lengthened: expires_at can be brought forward, never
// cleared or moved later. Both are ErrReplaced (ECONFLICT); other fields stay editable.
func checkReplacedUpdate(before, rec *APIKey, renamed bool) error {
	if before.ReplacedBy == "" {
		return nil
	}
	if renamed || outlives(rec.ExpiresAt, before.ExpiresAt) {
		return ErrReplaced(before)
	}
	return nil
}
