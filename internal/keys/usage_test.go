package keys

import (
	"strconv"
	"testing"
	"time"
)

// TestHeldUsesAreBounded: once maxPendingUses keys wait, uses of further keys are dropped and
// a key already held is still updated.
func TestHeldUsesAreBounded(t *testing.T) {
	r := NewUsageRecorder(nil, nil)
	at := time.Unix(2_000_000_000, 0)
	for i := range maxPendingUses {
		r.Record(strconv.Itoa(i), at)
	}
	r.Record("one more", at)
	r.Record("0", at.Add(time.Minute))
	p := r.Pending()
	if len(p) != maxPendingUses {
		t.Errorf("%d uses held, want the bound %d", len(p), maxPendingUses)
	}
	if p["0"] != at.Add(time.Minute).Unix() {
		t.Errorf("a held key's later use was not kept")
	}
	if r.dropped != 1 {
		t.Errorf("dropped %d, want 1", r.dropped)
	}
}
