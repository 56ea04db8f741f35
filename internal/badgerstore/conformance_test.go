package badgerstore_test

import (
	"testing"

	"github.com/keyauthz/keyauthz/internal/badgerstore"
	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/keys/storetest"
)

// TestBadgerConformance runs the store conformance suite against the Badger store, in memory
// and on disk (where every write is synced, as in production).
func TestBadgerConformance(t *testing.T) {
	t.Run("InMemory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) keys.Service {
			s, err := badgerstore.OpenInMemory()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			})
			return s
		})
	})
	t.Run("OnDisk", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) keys.Service {
			s, err := badgerstore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			})
			return s
		})
	})
}
