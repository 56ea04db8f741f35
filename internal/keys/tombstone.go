package keys

import (
	"encoding/json"
	"fmt"
	"time"
)

// Deletion marks (tombstones, docs/import.md#deleted-records): every delete of a domain, user
// or key, each record of a cascade included, leaves in the same transaction a mark holding
// the record's kind, id and the time it was deleted. An import (PlanImport) refuses a row
// whose id carries a mark, so that re-importing an export never brings back a revoked key,
// nor a deleted user or domain that new, never-imported keys of the same export would then
// hang from. Marks are never pruned (audit retention prunes the audit log only): they are an
// id and a time, and a revocation must outlive every export taken before it.

// Tombstone is the stored form of a deletion mark; the store's key holds the kind and id.
type Tombstone struct {
	DeletedAt int64 `json:"deleted_at"` // Unix seconds
}

// EncodeTombstone is the value a store writes for a record deleted at now.
func EncodeTombstone(now time.Time) []byte {
	b, _ := json.Marshal(Tombstone{DeletedAt: now.Unix()}) // one int64: always marshals
	return b
}

// DecodeTombstone reads a stored deletion mark; it returns the time of deletion in Unix
// seconds.
func DecodeTombstone(b []byte) (int64, error) {
	var t Tombstone
	if err := json.Unmarshal(b, &t); err != nil {
		return 0, fmt.Errorf("decode deletion mark: %w", err)
	}
	return t.DeletedAt, nil
}

// deletedReason is an import conflict's reason for a row whose id was deleted at the Unix
// time at.
func deletedReason(kind, id string, at int64) string {
	when := time.Unix(at, 0).UTC().Format(time.RFC3339)
	if kind == KindKey {
		return fmt.Sprintf("key %s was deleted at %s; a revoked key is never brought back by an import", id, when)
	}
	return fmt.Sprintf("%s %s was deleted at %s; a deleted %s is never brought back by an import", kind, id, when, kind)
}
