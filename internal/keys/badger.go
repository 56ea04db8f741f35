package keys

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/diskspace"
)

// Key layout. Every record and index lives under a short prefix; ids never contain "/".
//
//	d/<domain id>                    Domain (JSON)
//	dh/<host>                        domain id            (domains by host, unique)
//	u/<user id>                      User (JSON)
//	ud/<domain id>/<user id>         empty                (users by domain)
//	k/<key id>                       keyRecord (JSON, with the hash)
//	kd/<domain id>/<key id>          empty                (keys by domain)
//	ku/<user id>/<key id>            empty                (keys by user)
//	kn/<domain id>/<lower(name)>     key id               (key names per domain, unique)
const (
	pDomain       = "d/"
	pDomainHost   = "dh/"
	pUser         = "u/"
	pUserByDomain = "ud/"
	pKey          = "k/"
	pKeyByDomain  = "kd/"
	pKeyByUser    = "ku/"
	pKeyName      = "kn/"
)

func kDomain(id string) []byte            { return []byte(pDomain + id) }
func kDomainHost(host string) []byte      { return []byte(pDomainHost + host) }
func kUser(id string) []byte              { return []byte(pUser + id) }
func kUserByDomain(dom, id string) []byte { return []byte(pUserByDomain + dom + "/" + id) }
func kKey(id string) []byte               { return []byte(pKey + id) }
func kKeyByDomain(dom, id string) []byte  { return []byte(pKeyByDomain + dom + "/" + id) }
func kKeyByUser(user, id string) []byte   { return []byte(pKeyByUser + user + "/" + id) }
func kKeyName(dom, name string) []byte {
	return []byte(pKeyName + dom + "/" + strings.ToLower(name))
}

// *Store is a Service: a compile-time check.
var _ Service = (*Store)(nil)

// maxAttempts bounds the retries of a transaction that lost a conflict to a concurrent one.
const maxAttempts = 10

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

	// Check, if set, is called inside the update's transaction with the key as stored and as
	// it would be stored after the update (scopes normalised, no hash); an error aborts the
	// update and is returned as is. The admin API's minting cap runs here: judged in the
	// transaction, against the record it replaces, it cannot be raced by a concurrent update
	// of the same key (that one conflicts, and this one is retried and judged again).
	Check func(before, after *APIKey) error
}

// keyRecord is the stored form of a key: the API fields plus the hash.
type keyRecord struct {
	APIKey
	Hash string `json:"hash"`
}

// Option configures Open and OpenInMemory.
type Option func(*config)

type config struct {
	logger    *slog.Logger
	now       func() time.Time
	freeSpace func(path string) (uint64, error) // nil: statfs
}

// WithLogger routes Badger's warnings and errors to l (by default they are discarded).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the clock used for timestamps and for the expires_at validation.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Store is the Badger-backed store of domains, users and keys. It is safe for concurrent use.
// Every multi-record write is one Badger transaction, retried when it loses a conflict.
type Store struct {
	db  *badger.DB
	now func() time.Time

	// cascade is held for writing by the cascading deletes and for reading by the creates of
	// users and keys: Badger detects read/write conflicts but not phantoms, so without it a
	// key created while its user is being deleted could survive the user.
	cascade sync.RWMutex

	hookMu sync.Mutex
	hooks  []func(Change)

	nDomains, nUsers, nKeys atomic.Int64

	// space guards every write against a disk too full for Badger (space.go); nil in memory.
	space *diskspace.Guard
}

// Open opens (or creates) the store in the folder dir with SyncWrites on. It fails with a
// clear error when another process, or another Store, holds the folder, and with a
// *diskspace.LowError (wrapped) when dir's file system has too little free space to open the
// store safely: opening writes (it flushes the log left by the last run), and Badger writes
// through memory mappings, so a full disk would otherwise kill the process with SIGBUS. The
// sizes that bound Badger's writes and the margin kept free are in space.go.
func Open(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open store: no data folder given")
	}
	cfg := newConfig(opts)
	free := diskspace.Free
	if cfg.freeSpace != nil {
		free = cfg.freeSpace
	}
	need, err := spaceToOpen(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if have, err := free(dir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	} else if have < need {
		return nil, fmt.Errorf("open store: %w (free some space or move --data-dir; see docs/operations.md#disk-space)",
			&diskspace.LowError{Path: dir, Free: have, Need: need})
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBaseTableSize(baseTableSize).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumCompactors(2).
		WithBlockCacheSize(64 << 20).
		WithIndexCacheSize(32 << 20)
	s, err := open(bo, cfg)
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return nil, fmt.Errorf("data folder %s is in use by another keyauthz process", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}
	s.space = diskspace.NewGuard(dir, s.spaceNeed)
	if cfg.freeSpace != nil {
		s.space.SetFree(cfg.freeSpace)
	}
	return s, nil
}

// OpenInMemory opens an empty store that lives in memory only (for tests).
func OpenInMemory(opts ...Option) (*Store, error) {
	bo := badger.DefaultOptions("").
		WithInMemory(true).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithBlockCacheSize(8 << 20)
	s, err := open(bo, newConfig(opts))
	if err != nil {
		return nil, fmt.Errorf("open in-memory store: %w", err)
	}
	return s, nil
}

func newConfig(opts []Option) config {
	cfg := config{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func open(bo badger.Options, cfg config) (*Store, error) {
	bo = bo.WithLoggingLevel(badger.WARNING).WithLogger(nil)
	if cfg.logger != nil {
		bo = bo.WithLogger(badgerLogger{cfg.logger})
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, now: cfg.now}
	if err := s.initCounts(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database. On a disk too full for writes it skips saving the counts (the
// next Open counts the records instead) rather than write below the margin.
func (s *Store) Close() error {
	var saveErr error
	if s.CheckSpace() == nil {
		saveErr = s.saveCounts()
	}
	if err := errors.Join(saveErr, s.db.Close()); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// OnChange registers fn to be called, synchronously and after the commit, for every record
// written or deleted (each record of a cascade included).
func (s *Store) OnChange(fn func(Change)) {
	s.hookMu.Lock()
	defer s.hookMu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// Counts returns the number of domains, users and keys stored.
func (s *Store) Counts(_ context.Context) (domains, users, keys int) {
	return int(s.nDomains.Load()), int(s.nUsers.Load()), int(s.nKeys.Load())
}

// --- domains ---

// CreateDomain validates d, normalises its host, gives it an id and timestamps, and stores it;
// on success d holds the stored record. It returns EUNPROCESSABLE when the name or host is
// missing or invalid, or when the host is taken (field "domain", reason "has already been
// taken", as PlaceOS reports it, rather than a 409).
func (s *Store) CreateDomain(ctx context.Context, d *Domain) error {
	rec := *d
	failures := normalizeDomain(&rec)
	rec.ID = newDomainID()
	rec.CreatedAt = s.now().Unix()
	rec.UpdatedAt = rec.CreatedAt
	err := s.update(ctx, func(t *tx) error {
		fs := slices.Clip(failures)
		if !hasFailure(fs, "domain") {
			taken, err := exists(t.txn, kDomainHost(rec.Domain))
			if err != nil {
				return err
			}
			if taken {
				fs = append(fs, Failure{"domain", reasonTaken})
			}
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		if err := setJSON(t.txn, kDomain(rec.ID), &rec); err != nil {
			return err
		}
		if err := t.txn.Set(kDomainHost(rec.Domain), []byte(rec.ID)); err != nil {
			return err
		}
		t.changed(KindDomain, rec.ID, &t.dDomains, 1)
		return nil
	})
	if err != nil {
		return err
	}
	*d = rec
	return nil
}

// GetDomain returns the domain with the given id, or ENOTFOUND.
func (s *Store) GetDomain(ctx context.Context, id string) (*Domain, error) {
	var d *Domain
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		d, err = getDomain(txn, id)
		return err
	})
	return d, err
}

// DomainByHost returns the domain whose host is host (normalised first: any case, a port is
// ignored), or ENOTFOUND.
func (s *Store) DomainByHost(ctx context.Context, host string) (*Domain, error) {
	h, ok := NormalizeHost(host)
	if !ok {
		return nil, notFound("domain", host)
	}
	var d *Domain
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(kDomainHost(h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return notFound("domain", h)
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		d, err = getDomain(txn, string(id))
		return err
	})
	return d, err
}

// ListDomains returns every domain, sorted by name then id.
func (s *Store) ListDomains(ctx context.Context) ([]*Domain, error) {
	var out []*Domain
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scanJSON(txn, pDomain, func() any { d := new(Domain); out = append(out, d); return d })
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *Domain) int { return byNameID(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// UpdateDomain replaces the name, host and description of the domain d.ID, validated as in
// CreateDomain; on success d holds the stored record. It is ModifyDomain with a change that
// overwrites every field. It returns ENOTFOUND or EUNPROCESSABLE.
func (s *Store) UpdateDomain(ctx context.Context, d *Domain) error {
	rec := *d
	out, err := s.ModifyDomain(ctx, d.ID, func(cur *Domain) error {
		cur.Name, cur.Domain, cur.Description = rec.Name, rec.Domain, rec.Description
		return nil
	})
	if err != nil {
		return err
	}
	*d = *out
	return nil
}

// ModifyDomain reads the domain id, lets change edit it and stores the result, all in one
// transaction, validated as in CreateDomain (a new host must be free); it returns the stored
// record. The id and created_at keep their stored values whatever change does. An error from
// change aborts the update and is returned as is. Because change sees the record it replaces,
// two concurrent patches of different fields both survive: the second conflicts and is
// retried with the first one's record. It returns ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyDomain(ctx context.Context, id string, change func(d *Domain) error) (*Domain, error) {
	now := s.now().Unix()
	var out *Domain
	err := s.update(ctx, func(t *tx) error {
		old, err := getDomain(t.txn, id)
		if err != nil {
			return err
		}
		rec := *old
		if err := change(&rec); err != nil {
			return err
		}
		fs := normalizeDomain(&rec)
		hostChanged := !hasFailure(fs, "domain") && rec.Domain != old.Domain
		if hostChanged {
			taken, err := exists(t.txn, kDomainHost(rec.Domain))
			if err != nil {
				return err
			}
			if taken {
				fs = append(fs, Failure{"domain", reasonTaken})
			}
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		rec.ID, rec.CreatedAt, rec.UpdatedAt = old.ID, old.CreatedAt, now
		if hostChanged {
			if err := t.txn.Delete(kDomainHost(old.Domain)); err != nil {
				return err
			}
			if err := t.txn.Set(kDomainHost(rec.Domain), []byte(rec.ID)); err != nil {
				return err
			}
		}
		if err := setJSON(t.txn, kDomain(rec.ID), &rec); err != nil {
			return err
		}
		t.changed(KindDomain, rec.ID, nil, 0)
		out = &rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDomain deletes the domain, its users and their keys in one transaction. It returns
// ENOTFOUND, or ECONFLICT if the cascade is too large for one transaction.
func (s *Store) DeleteDomain(ctx context.Context, id string, check ...func(u *User, keys []*APIKey) error) error {
	s.cascade.Lock()
	defer s.cascade.Unlock()
	return s.update(ctx, func(t *tx) error {
		d, err := getDomain(t.txn, id)
		if err != nil {
			return err
		}
		userIDs, err := collect(t.txn, pUserByDomain+id+"/")
		if err != nil {
			return err
		}
		for _, uid := range userIDs {
			if err := checkUserDelete(t.txn, uid, check); err != nil {
				return err
			}
			if err := deleteUserTx(t, uid); err != nil {
				return err
			}
		}
		// Keys always belong to a user of their domain; sweep any stray one all the same.
		if err := deleteIndexedKeys(t, pKeyByDomain+id+"/"); err != nil {
			return err
		}
		if err := t.txn.Delete(kDomainHost(d.Domain)); err != nil {
			return err
		}
		if err := t.txn.Delete(kDomain(id)); err != nil {
			return err
		}
		t.changed(KindDomain, id, &t.dDomains, -1)
		return nil
	})
}

// --- users ---

// CreateUser validates u, gives it an id and timestamps, and stores it; on success u holds the
// stored record. It returns EUNPROCESSABLE when the name is missing or too long, the email has
// no "@", or the authority_id is missing or names no domain.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	rec := *u
	failures := normalizeUser(&rec)
	rec.ID = newUserID()
	rec.CreatedAt = s.now().Unix()
	rec.UpdatedAt = rec.CreatedAt
	s.cascade.RLock()
	defer s.cascade.RUnlock()
	err := s.update(ctx, func(t *tx) error {
		fs := slices.Clip(failures)
		if rec.AuthorityID == "" {
			fs = append(fs, Failure{"authority_id", reasonRequired})
		} else if ok, err := exists(t.txn, kDomain(rec.AuthorityID)); err != nil {
			return err
		} else if !ok {
			fs = append(fs, Failure{"authority_id", reasonMissing})
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		if err := setJSON(t.txn, kUser(rec.ID), &rec); err != nil {
			return err
		}
		if err := t.txn.Set(kUserByDomain(rec.AuthorityID, rec.ID), nil); err != nil {
			return err
		}
		t.changed(KindUser, rec.ID, &t.dUsers, 1)
		return nil
	})
	if err != nil {
		return err
	}
	*u = rec
	return nil
}

// GetUser returns the user with the given id, or ENOTFOUND.
func (s *Store) GetUser(ctx context.Context, id string) (*User, error) {
	var u *User
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		u, err = getUser(txn, id)
		return err
	})
	return u, err
}

// ListUsers returns the users of the domain authorityID ("" for every domain), sorted by name
// then id. An unknown domain has no users.
func (s *Store) ListUsers(ctx context.Context, authorityID string) ([]*User, error) {
	var out []*User
	err := s.view(ctx, func(txn *badger.Txn) error {
		if authorityID == "" {
			return scanJSON(txn, pUser, func() any { u := new(User); out = append(out, u); return u })
		}
		ids, err := collect(txn, pUserByDomain+authorityID+"/")
		if err != nil {
			return err
		}
		for _, id := range ids {
			u, err := getUser(txn, id)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *User) int { return byNameID(a.Name, a.ID, b.Name, b.ID) })
	return out, nil
}

// UpdateUser replaces the name, email, flags and groups of the user u.ID, validated as in
// CreateUser; on success u holds the stored record. It is ModifyUser with a change that
// overwrites every field; an empty AuthorityID keeps the stored one. It returns ENOTFOUND or
// EUNPROCESSABLE (a different AuthorityID included). Lowering a user's level narrows its keys
// at once (the policy caps a key at its user's level); the keys themselves are not rewritten.
func (s *Store) UpdateUser(ctx context.Context, u *User) error {
	rec := *u
	out, err := s.ModifyUser(ctx, u.ID, func(cur *User) error {
		authority := cmp.Or(rec.AuthorityID, cur.AuthorityID)
		*cur = rec
		cur.AuthorityID = authority
		return nil
	})
	if err != nil {
		return err
	}
	*u = *out
	return nil
}

// ModifyUser reads the user id, lets change edit it and stores the result, all in one
// transaction, validated as in CreateUser; it returns the stored record. The id and
// created_at keep their stored values whatever change does. A user cannot move to another
// domain, because its keys belong to its domain: an AuthorityID that change leaves different
// from the stored one (empty included) is EUNPROCESSABLE, field "authority_id", reason "cannot
// be changed". This is the one place that rule lives. An error from change aborts the update
// and is returned as is. Because change sees the record it replaces, a check it makes (such as
// "this field keeps its value") cannot be raced by a concurrent update, and two concurrent
// patches of different fields both survive: the second conflicts and is retried with the
// first one's record. It returns ENOTFOUND, EUNPROCESSABLE or change's error.
func (s *Store) ModifyUser(ctx context.Context, id string, change func(u *User) error) (*User, error) {
	now := s.now().Unix()
	var out *User
	err := s.update(ctx, func(t *tx) error {
		old, err := getUser(t.txn, id)
		if err != nil {
			return err
		}
		rec := *old
		rec.Groups = slices.Clone(old.Groups)
		if err := change(&rec); err != nil {
			return err
		}
		fs := normalizeUser(&rec)
		if rec.AuthorityID != old.AuthorityID {
			fs = append(fs, Failure{"authority_id", reasonFixed})
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		rec.ID, rec.CreatedAt, rec.UpdatedAt = old.ID, old.CreatedAt, now
		if err := setJSON(t.txn, kUser(rec.ID), &rec); err != nil {
			return err
		}
		t.changed(KindUser, rec.ID, nil, 0)
		out = &rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser deletes the user and its keys in one transaction. Each check, if any, is called
// inside the transaction with the user and its keys (no hashes) before anything is deleted;
// an error aborts the delete and is returned as is (the admin API's level cap runs here). It
// returns ENOTFOUND or a check's error.
func (s *Store) DeleteUser(ctx context.Context, id string, check ...func(u *User, keys []*APIKey) error) error {
	s.cascade.Lock()
	defer s.cascade.Unlock()
	return s.update(ctx, func(t *tx) error {
		if err := checkUserDelete(t.txn, id, check); err != nil {
			return err
		}
		return deleteUserTx(t, id)
	})
}

// checkUserDelete runs each check on the user id and its keys (without hashes) as stored, in
// the delete's transaction; with no check it reads nothing.
func checkUserDelete(txn *badger.Txn, id string, check []func(u *User, keys []*APIKey) error) error {
	if len(check) == 0 {
		return nil
	}
	u, err := getUser(txn, id)
	if err != nil {
		return err
	}
	ids, err := collect(txn, pKeyByUser+id+"/")
	if err != nil {
		return err
	}
	keys := make([]*APIKey, 0, len(ids))
	for _, kid := range ids {
		k, err := getKey(txn, kid)
		if err != nil {
			return err
		}
		k.Hash = ""
		keys = append(keys, k)
	}
	for _, c := range check {
		if err := c(u, keys); err != nil {
			return err
		}
	}
	return nil
}

// --- keys ---

// CreateKey validates k, generates its key material and stores k with the hash only. It
// returns the plaintext key, which exists nowhere else; on success k holds the stored key
// (without hash). Scopes are normalised and an empty permission means "user"; AuthorityID is
// set to the user's domain, whatever was given. It returns EINVALID for a malformed scope and
// EUNPROCESSABLE when the name is missing, too long or taken in the domain (case-insensitive),
// the user does not exist, the permission is invalid or above the user's level, expires_at
// is not in the future, or the scopes break a limit (MaxScopes, MaxScopeLength,
// MaxScopesLength).
func (s *Store) CreateKey(ctx context.Context, k *APIKey) (Secret, error) {
	rec := *k
	failures := checkScopeLimits(rec.Scopes, nil)
	if len(failures) == 0 {
		scopes, err := NormalizeScopes(rec.Scopes)
		if err != nil {
			return "", err
		}
		rec.Scopes = scopes
	}
	rec.Name, failures = checkName("name", rec.Name, failures)
	rec.Description = strings.TrimSpace(rec.Description)
	if rec.Permissions == "" {
		rec.Permissions = PermissionUser
	}
	now := s.now()
	failures = checkExpiry(rec.ExpiresAt, now, failures)
	plaintext, id, hash, err := Generate()
	if err != nil {
		return "", err
	}
	rec.ID, rec.Hash, rec.LastUsedAt = id, "", nil
	rec.CreatedAt, rec.UpdatedAt = now.Unix(), now.Unix()

	s.cascade.RLock()
	defer s.cascade.RUnlock()
	err = s.update(ctx, func(t *tx) error {
		fs := slices.Clip(failures)
		var user *User
		if rec.UserID == "" {
			fs = append(fs, Failure{"user_id", reasonRequired})
		} else {
			u, err := getUser(t.txn, rec.UserID)
			switch {
			case ErrorCode(err) == ENOTFOUND:
				fs = append(fs, Failure{"user_id", reasonMissing})
			case err != nil:
				return err
			default:
				user = u
			}
		}
		fs = checkPermissions(rec.Permissions, user, fs)
		if user != nil {
			rec.AuthorityID = user.AuthorityID
			if !hasFailure(fs, "name") {
				taken, err := exists(t.txn, kKeyName(rec.AuthorityID, rec.Name))
				if err != nil {
					return err
				}
				if taken {
					fs = append(fs, Failure{"name", reasonTaken})
				}
			}
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		if dup, err := exists(t.txn, kKey(rec.ID)); err != nil || dup {
			return cmp.Or(err, errors.New("create key: id collision"))
		}
		if err := putKey(t.txn, &rec, hash); err != nil {
			return err
		}
		if err := t.txn.Set(kKeyName(rec.AuthorityID, rec.Name), []byte(rec.ID)); err != nil {
			return err
		}
		t.changed(KindKey, rec.ID, &t.dKeys, 1)
		return nil
	})
	if err != nil {
		return "", err
	}
	*k = rec
	return plaintext, nil
}

// GetKey returns the key with the given id, without its hash, or ENOTFOUND.
func (s *Store) GetKey(ctx context.Context, id string) (*APIKey, error) {
	var k *APIKey
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		k, err = getKey(txn, id)
		return err
	})
	if k != nil {
		k.Hash = ""
	}
	return k, err
}

// KeyForAuth returns, read in one transaction, the key with the given id including its Hash,
// its user and its domain. It returns ENOTFOUND if any of the three is missing. It is meant
// for verification (Authenticate, caches) and never for a response.
func (s *Store) KeyForAuth(ctx context.Context, id string) (*APIKey, *User, *Domain, error) {
	var (
		k *APIKey
		u *User
		d *Domain
	)
	err := s.view(ctx, func(txn *badger.Txn) (err error) {
		if k, err = getKey(txn, id); err != nil {
			return err
		}
		if u, err = getUser(txn, k.UserID); err != nil {
			return err
		}
		d, err = getDomain(txn, k.AuthorityID)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return k, u, d, nil
}

// ListKeys returns one page of the keys matching f, sorted by name (case-insensitive) then id,
// and the number of keys matching f in all. Keys carry no hash.
func (s *Store) ListKeys(ctx context.Context, f KeyFilter) ([]*APIKey, int, error) {
	type entry struct {
		lname string
		k     *APIKey
	}
	var all []entry
	q := strings.ToLower(strings.TrimSpace(f.Q))
	add := func(k *APIKey) {
		k.Hash = ""
		lname := strings.ToLower(k.Name)
		if q == "" || strings.Contains(lname, q) || strings.Contains(strings.ToLower(k.Description), q) {
			all = append(all, entry{lname, k})
		}
	}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if f.AuthorityID == "" {
			return scanJSON(txn, pKey, func() any { return new(keyRecord) }, func(v any) { add(&v.(*keyRecord).APIKey) })
		}
		ids, err := collect(txn, pKeyByDomain+f.AuthorityID+"/")
		if err != nil {
			return err
		}
		for _, id := range ids {
			k, err := getKey(txn, id)
			if err != nil {
				return err
			}
			add(k)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(all, func(a, b entry) int {
		return cmp.Or(strings.Compare(a.lname, b.lname), strings.Compare(a.k.ID, b.k.ID))
	})
	total := len(all)
	lo := min(max(f.Offset, 0), total)
	hi := total
	if f.Limit > 0 {
		hi = min(lo+f.Limit, total)
	}
	out := make([]*APIKey, 0, hi-lo)
	for _, e := range all[lo:hi] {
		out = append(out, e.k)
	}
	return out, total, nil
}

// UpdateKey applies u to the key id and returns the stored key (without hash). The fields it
// changes are validated as in CreateKey; fields it leaves alone are not re-checked, so an
// expired key can still be renamed and a key above its since-demoted user's level can still
// be described. u.Check, if set, judges the change inside the transaction. It returns
// ENOTFOUND, EINVALID (scope), EUNPROCESSABLE, or Check's error.
func (s *Store) UpdateKey(ctx context.Context, id string, u KeyUpdate) (*APIKey, error) {
	var scopes []string
	var scopeFailures []Failure
	if u.Scopes != nil {
		// Over a limit, the scopes stay as given: the update fails (422) whatever Check says.
		scopes = *u.Scopes
		if scopeFailures = checkScopeLimits(scopes, nil); len(scopeFailures) == 0 {
			var err error
			if scopes, err = NormalizeScopes(scopes); err != nil {
				return nil, err
			}
		}
	}
	now := s.now()
	var out *APIKey
	err := s.update(ctx, func(t *tx) error {
		rec, err := getKey(t.txn, id)
		if err != nil {
			return err
		}
		before := *rec
		hash, oldName := rec.Hash, rec.Name
		fs := slices.Clip(scopeFailures)
		if u.Name != nil {
			rec.Name, fs = checkName("name", *u.Name, fs)
		}
		if u.Description != nil {
			rec.Description = strings.TrimSpace(*u.Description)
		}
		if u.Scopes != nil {
			rec.Scopes = scopes
		}
		if u.Permissions != nil {
			rec.Permissions = cmp.Or(*u.Permissions, PermissionUser)
			user, err := getUser(t.txn, rec.UserID)
			if err != nil && ErrorCode(err) != ENOTFOUND {
				return err
			}
			fs = checkPermissions(rec.Permissions, user, fs)
		}
		if u.ExpiresAt.Set {
			rec.ExpiresAt = u.ExpiresAt.Value
			fs = checkExpiry(rec.ExpiresAt, now, fs)
		}
		// Authorization before validation, as for every other request: a caller who may not
		// write this key learns nothing from its validation failures.
		if u.Check != nil {
			before.Hash = ""
			after := *rec
			after.Hash = ""
			if err := u.Check(&before, &after); err != nil {
				return err
			}
		}
		// Compare as the name index does (kKeyName lower-cases): strings.EqualFold folds more
		// (ſ and s), and a rename it missed would leave the index naming the old name.
		renamed := !hasFailure(fs, "name") && !bytes.Equal(kKeyName(rec.AuthorityID, rec.Name), kKeyName(rec.AuthorityID, oldName))
		if renamed {
			taken, err := exists(t.txn, kKeyName(rec.AuthorityID, rec.Name))
			if err != nil {
				return err
			}
			if taken {
				fs = append(fs, Failure{"name", reasonTaken})
			}
		}
		if len(fs) > 0 {
			return validationFailed(fs)
		}
		rec.UpdatedAt = now.Unix()
		if renamed {
			if err := t.txn.Delete(kKeyName(rec.AuthorityID, oldName)); err != nil {
				return err
			}
			if err := t.txn.Set(kKeyName(rec.AuthorityID, rec.Name), []byte(rec.ID)); err != nil {
				return err
			}
		}
		if err := putKey(t.txn, rec, hash); err != nil {
			return err
		}
		t.changed(KindKey, rec.ID, nil, 0)
		rec.Hash = ""
		out = rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteKey deletes the key id. Each check, if any, is called inside the transaction with the
// key as stored (no hash) before it is deleted; an error aborts the delete and is returned as
// is (the admin API's minting cap runs here, as UpdateKey's Check). It returns ENOTFOUND or a
// check's error.
func (s *Store) DeleteKey(ctx context.Context, id string, check ...func(k *APIKey) error) error {
	return s.update(ctx, func(t *tx) error {
		if len(check) > 0 {
			k, err := getKey(t.txn, id)
			if err != nil {
				return err
			}
			k.Hash = ""
			for _, c := range check {
				if err := c(k); err != nil {
					return err
				}
			}
		}
		return deleteKeyTx(t, id)
	})
}

// Authenticate verifies a presented key at now: a malformed key is rejected before any store
// access, then the key is looked up by id, its HMAC compared in constant time, and its expiry
// checked. It returns ErrUnknownKey (malformed, unknown id, wrong secret, or a key whose user
// or domain is gone), ErrExpiredKey, or an internal error. The result's key has no hash.
func (s *Store) Authenticate(ctx context.Context, plaintext string, now time.Time) (*AuthResult, error) {
	id, secret, ok := ParseKey(plaintext)
	if !ok {
		return nil, ErrUnknownKey
	}
	k, u, d, err := s.KeyForAuth(ctx, id)
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

// --- transactions and helpers ---

// tx is one read-write transaction attempt and what it changed.
type tx struct {
	txn                     *badger.Txn
	changes                 []Change
	dDomains, dUsers, dKeys int64
}

func (t *tx) changed(kind, id string, counter *int64, delta int64) {
	t.changes = append(t.changes, Change{Kind: kind, ID: id})
	if counter != nil {
		*counter += delta
	}
}

// update runs fn in a read-write transaction, retrying on conflicts, then applies the count
// deltas and calls the change hooks.
//
// A write made for an admin-API caller (CallerFrom(ctx) with a key) first re-reads the
// caller's key and user in the same transaction and is refused if either changed since the
// request was authorized (recheckCaller): a request judged before a revocation or demotion
// cannot write after it, and a concurrent change of those records makes this transaction
// conflict, so it is retried and judged again. Internal writes (bootstrap, usage) carry no
// caller and are not rechecked.
func (s *Store) update(ctx context.Context, fn func(*tx) error) error {
	caller := CallerFrom(ctx)
	// Before Badger can fault on a full disk: EINSUFFICIENT (507), the store left as it was.
	if err := s.CheckSpace(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := &tx{}
		err := s.db.Update(func(txn *badger.Txn) error {
			t.txn = txn
			if err := recheckCaller(txn, caller, s.now()); err != nil {
				return err
			}
			return fn(t)
		})
		var e *Error
		switch {
		case err == nil:
			s.nDomains.Add(t.dDomains)
			s.nUsers.Add(t.dUsers)
			s.nKeys.Add(t.dKeys)
			s.notify(t.changes)
			return nil
		case errors.As(err, &e):
			return err
		case errors.Is(err, badger.ErrConflict) && attempt < maxAttempts:
			continue
		case errors.Is(err, badger.ErrConflict):
			return Errorf(ECONFLICT, "too many concurrent changes, try again")
		case errors.Is(err, badger.ErrTxnTooBig):
			return Errorf(ECONFLICT, "too many records to change in one transaction: delete some of them first")
		default:
			return fmt.Errorf("store update: %w", err)
		}
	}
}

func (s *Store) view(ctx context.Context, fn func(*badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(fn)
	var e *Error
	if err != nil && !errors.As(err, &e) {
		return fmt.Errorf("store read: %w", err)
	}
	return err
}

func (s *Store) notify(changes []Change) {
	if len(changes) == 0 {
		return
	}
	s.hookMu.Lock()
	hooks := slices.Clone(s.hooks)
	s.hookMu.Unlock()
	for _, h := range hooks {
		for _, c := range changes {
			h(c)
		}
	}
}

// deleteIndexedKeys deletes every key listed under an index prefix (keys by user, by domain).
func deleteIndexedKeys(t *tx, prefix string) error {
	ids, err := collect(t.txn, prefix)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := deleteKeyTx(t, id); err != nil {
			return err
		}
	}
	return nil
}

func deleteUserTx(t *tx, id string) error {
	u, err := getUser(t.txn, id)
	if err != nil {
		return err
	}
	if err := deleteIndexedKeys(t, pKeyByUser+id+"/"); err != nil {
		return err
	}
	if err := t.txn.Delete(kUserByDomain(u.AuthorityID, id)); err != nil {
		return err
	}
	if err := t.txn.Delete(kUser(id)); err != nil {
		return err
	}
	t.changed(KindUser, id, &t.dUsers, -1)
	return nil
}

func deleteKeyTx(t *tx, id string) error {
	k, err := getKey(t.txn, id)
	if err != nil {
		return err
	}
	for _, key := range [][]byte{
		kKey(id), kKeyByDomain(k.AuthorityID, id), kKeyByUser(k.UserID, id), kKeyName(k.AuthorityID, k.Name),
	} {
		if err := t.txn.Delete(key); err != nil {
			return err
		}
	}
	t.changed(KindKey, id, &t.dKeys, -1)
	return nil
}

// putKey writes the key record with its hash and its by-domain and by-user index entries (the
// name index is the caller's: it changes only on create and rename).
func putKey(w setter, k *APIKey, hash string) error {
	rec := keyRecord{APIKey: *k, Hash: hash}
	rec.APIKey.Hash = ""
	if err := setJSON(w, kKey(k.ID), &rec); err != nil {
		return err
	}
	if err := w.Set(kKeyByDomain(k.AuthorityID, k.ID), nil); err != nil {
		return err
	}
	return w.Set(kKeyByUser(k.UserID, k.ID), nil)
}

// getKey returns the key with its Hash set, or ENOTFOUND.
func getKey(txn *badger.Txn, id string) (*APIKey, error) {
	var rec keyRecord
	if err := getJSON(txn, kKey(id), &rec); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, notFound("key", id)
		}
		return nil, err
	}
	k := rec.APIKey
	k.Hash = rec.Hash
	return &k, nil
}

func getUser(txn *badger.Txn, id string) (*User, error) {
	var u User
	if err := getJSON(txn, kUser(id), &u); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, notFound("user", id)
		}
		return nil, err
	}
	return &u, nil
}

func getDomain(txn *badger.Txn, id string) (*Domain, error) {
	var d Domain
	if err := getJSON(txn, kDomain(id), &d); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, notFound("domain", id)
		}
		return nil, err
	}
	return &d, nil
}

// getJSON decodes the value at key into v; it returns badger.ErrKeyNotFound when absent.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		return nil
	})
}

// setter is what records are written through: a transaction (*badger.Txn) or, for bulk
// imports, a *badger.WriteBatch.
type setter interface {
	Set(key, val []byte) error
}

func setJSON(w setter, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return w.Set(key, b)
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// collect returns the rest of every key under prefix (index keys: the ids).
func collect(txn *badger.Txn, prefix string) ([]string, error) {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	var out []string
	for it.Rewind(); it.Valid(); it.Next() {
		out = append(out, string(it.Item().Key()[len(prefix):]))
	}
	return out, nil
}

func countPrefix(txn *badger.Txn, prefix string) int {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// scanJSON decodes every value under prefix into a fresh value from alloc, then passes it to
// each of then.
func scanJSON(txn *badger.Txn, prefix string, alloc func() any, then ...func(any)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v := alloc()
		err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, v) })
		if err != nil {
			return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
		}
		for _, f := range then {
			f(v)
		}
	}
	return nil
}

func hasFailure(fs []Failure, field string) bool {
	return slices.ContainsFunc(fs, func(f Failure) bool { return f.Field == field })
}

func byNameID(aName, aID, bName, bID string) int {
	return cmp.Or(strings.Compare(strings.ToLower(aName), strings.ToLower(bName)), strings.Compare(aID, bID))
}

// badgerLogger routes Badger's warnings and errors to slog and drops the rest.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
