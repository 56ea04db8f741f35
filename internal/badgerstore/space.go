package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/keyauthz/keyauthz/internal/diskspace"
	"github.com/keyauthz/keyauthz/internal/keys"
)

// The disk-space guard: the Badger sizes that bound what a write may still add, and the free
// space every write needs (docs/operations.md#disk-space).

// Badger writes its log (the memtable's write-ahead file, .mem) and its tables (.sst) through
// memory mappings. When the file system cannot supply a page of a mapping the kernel kills the
// process with SIGBUS: there is no error to handle. So the store refuses a write while enough
// space is still free for everything Badger may go on to write after that write, and the
// sizes below are chosen so that this space is small and known. docs/operations.md#disk-space
// tells operators the same arithmetic.
const (
	// memTableSize bounds the memtable and so its log file: Badger starts a new memtable
	// once the log reaches this size. Badger's default is 64 MiB; 4 MiB holds some 6,000
	// key writes, and admin writes are few, so smaller memtables cost nothing but a few more
	// flushes. Each log file is created sparse at twice this size and filled as written.
	memTableSize = 4 << 20
	// numMemtables is how many memtables (the one taking writes and those waiting to be
	// flushed) exist at once: each may still become a table of up to memTableSize.
	numMemtables = 2
	// maxWriteBatch is the most one commit adds to the log past the check that admitted it:
	// Badger's largest batch, 15% of the memtable.
	maxWriteBatch = memTableSize * 15 / 100
	// baseTableSize is the size of the tables compactions write at the base level (Badger's
	// default, stated so that the arithmetic does not depend on a default that may move).
	baseTableSize = 2 << 20
	// valueThreshold: values this large or larger are written to the value log instead of
	// the memtable's log. Badger requires it to fit one batch (maxWriteBatch); its default,
	// 1 MiB, does not. Records are a few hundred bytes; only a record with a description of
	// hundreds of KiB goes to the value log, one batch like any other write.
	valueThreshold = 256 << 10
	// valueLogFileSize bounds a value-log file; the value log holds little more than its
	// header, and the bound keeps the sparse file at 32 MiB instead of 2 GiB.
	valueLogFileSize = 16 << 20
	// spaceSlack covers the small writes that are not memtables or tables: the manifest, the
	// 1 MiB discard-statistics file, value-log headers, file-system metadata and writes
	// already admitted and in flight.
	spaceSlack = 2 << 20

	// fixedSpaceMargin is the free space, beyond the tables (see spaceNeed), below which
	// writes are refused: the log may still grow by one batch, each memtable may still be
	// flushed to a table of its size (the last one when the store closes), plus the slack.
	// 2×4 MiB + 0.6 MiB + 2 MiB = 10.6 MiB (11,114,905 bytes).
	fixedSpaceMargin = numMemtables*memTableSize + maxWriteBatch + spaceSlack
)

// spaceNeed is the free space the store needs to take a write safely: fixedSpaceMargin plus
// the size of its tables. A compaction writes its new tables before it deletes the ones it
// replaces, and in a small store (every table in one level) a single compaction can rewrite
// every table, so the tables' size is what compactions may still claim.
func (s *Store) spaceNeed() uint64 {
	var tables int64
	for _, l := range s.db.Levels() {
		tables += l.Size
	}
	return fixedSpaceMargin + uint64(max(tables, 0))
}

// spaceToOpen is the free space Open needs before it opens Badger: the same rule as spaceNeed,
// with the tables measured from the folder, and each log file left by the last run counted
// at its allocated size, since opening flushes it to a table (a log written by an earlier
// version, with larger memtables, may be larger than memTableSize).
func spaceToOpen(dir string) (uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fixedSpaceMargin, nil
		}
		return 0, fmt.Errorf("measure data folder %s: %w", dir, err)
	}
	need := uint64(fixedSpaceMargin)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sst") && !strings.HasSuffix(name, ".mem") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return 0, fmt.Errorf("measure data folder %s: %w", dir, err)
		}
		need += allocated(fi)
	}
	return need, nil
}

// allocated is the space a file takes on disk: logs are sparse, so their length says little.
func allocated(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512 //nolint:gosec // st_blocks is never negative
	}
	return uint64(max(fi.Size(), 0))
}

// CheckSpace measures the free space of the store's folder now: nil when a write is safe,
// EINSUFFICIENT when the folder's file system has less free than the store needs (the message
// names the folder and both figures), or an internal error when it cannot be measured. A
// store in memory always has room. Every write path calls it first.
func (s *Store) CheckSpace() error {
	if s.space == nil {
		return nil
	}
	err := s.space.Check()
	var low *diskspace.LowError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &low):
		return &keys.Error{Code: keys.EINSUFFICIENT, Message: low.Error()}
	default:
		return err
	}
}

// SpaceGuard is the guard of the store's folder (nil for a store in memory): Watch it to log
// the moment writes stop and resume, Check it for /health.
func (s *Store) SpaceGuard() *diskspace.Guard { return s.space }

// withFreeSpace replaces statfs for the store's space checks (tests).
func withFreeSpace(free func(path string) (uint64, error)) Option {
	return func(c *config) { c.freeSpace = free }
}
