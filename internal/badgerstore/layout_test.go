package badgerstore

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestKeyRecordJSON: the stored record of a key keeps the hash that the API's JSON leaves out
// (keys TestAPIKeyJSON).
func TestKeyRecordJSON(t *testing.T) {
	k := keys.APIKey{ID: "0123456789abcdef0123456789abcdef", Name: "n", Hash: "deadbeef"}
	rb, _ := json.Marshal(keyRecord{APIKey: k, Hash: k.Hash})
	if !strings.Contains(string(rb), `"hash":"deadbeef"`) {
		t.Errorf("record lacks the hash: %s", rb)
	}
}
