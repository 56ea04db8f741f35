package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/diskspace"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// Open, OpenInMemory and Close; options, the record counters and the Badger logger.

// *Store is a keys.Service: a compile-time check.
var _ keys.Service = (*Store)(nil)

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
	hooks  []func(keys.Change)

	nDomains, nUsers, nKeys atomic.Int64

	// space guards every write against a disk too full for Badger (space.go); nil in memory.
	space *diskspace.Guard
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

// Counts returns the number of domains, users and keys stored.
func (s *Store) Counts(_ context.Context) (domains, users, apiKeys int) {
	return int(s.nDomains.Load()), int(s.nUsers.Load()), int(s.nKeys.Load())
}

// kCounts holds the record counts as of the last clean Close (JSON storedCounts). Open takes
// it and deletes it, so that a process that dies without Close leaves none and the next Open
// counts by scanning; with it, Open does not read every key of a large store (start-up time,
// and the pages a scan would pull into memory).
var kCounts = []byte("meta/counts")

type storedCounts struct {
	Domains int64 `json:"domains"`
	Users   int64 `json:"users"`
	Keys    int64 `json:"keys"`
}

// initCounts sets the counters from the checkpoint of the last Close, or by scanning.
func (s *Store) initCounts() error {
	var c storedCounts
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		err := getJSON(txn, kCounts, &c)
		if errors.Is(err, badger.ErrKeyNotFound) {
			c.Domains = int64(countPrefix(txn, pDomain))
			c.Users = int64(countPrefix(txn, pUser))
			c.Keys = int64(countPrefix(txn, pKey))
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return err
	}
	if found {
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(kCounts) }); err != nil {
			return err
		}
	}
	s.nDomains.Store(c.Domains)
	s.nUsers.Store(c.Users)
	s.nKeys.Store(c.Keys)
	return nil
}

// saveCounts writes the counters for the next Open.
func (s *Store) saveCounts() error {
	c := storedCounts{Domains: s.nDomains.Load(), Users: s.nUsers.Load(), Keys: s.nKeys.Load()}
	return s.db.Update(func(txn *badger.Txn) error { return setJSON(txn, kCounts, &c) })
}

// Compact flattens the store's LSM tree into one level. Call it after a large ImportKeys and
// before Close: otherwise the next Open starts with compactions of everything imported, which
// take CPU and hundreds of MB of memory while the service begins to serve.
func (s *Store) Compact() error {
	if err := s.db.Flatten(2); err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	return nil
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
