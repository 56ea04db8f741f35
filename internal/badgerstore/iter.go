package badgerstore

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Iteration: the prefix scans behind listings, cascades and counts, and the paging of a
// sorted listing.

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
