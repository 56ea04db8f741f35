package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// The audit log (docs/audit.md): one record for every admin write, built here and stored by
// the backend in the same transaction as the change, so that a change is never committed
// without its record nor a record without its change.

// Audit actions.
const (
	AuditCreate = "create"
	AuditUpdate = "update"
	AuditDelete = "delete"
	AuditRotate = "rotate"
	AuditImport = "import"
)

// AuditRecord is one admin write: who made it (the calling key and its user, empty for a
// write made without the admin API, such as bootstrap or the CLI's direct store access), when,
// what (action and target), the fields it changed with their old and new values, and the
// request it was made in. It never holds a secret or a hash (see NewAuditRecord).
type AuditRecord struct {
	ID          string        `json:"id"`
	Time        int64         `json:"time"` // Unix seconds, as every other timestamp
	Action      string        `json:"action"`
	TargetKind  string        `json:"target_kind"` // "domain", "user" or "key"
	TargetID    string        `json:"target_id"`
	ActorKeyID  string        `json:"actor_key_id"`
	ActorUserID string        `json:"actor_user_id"`
	RequestID   string        `json:"request_id"`
	Changes     []FieldChange `json:"changes"`
	// Cascade lists what a delete removed with its target (a domain's users and keys, a
	// user's keys), Related the other records any other write changed (a rotation's new key,
	// an import's records): one admin write is one record, and each of these records is still
	// found by its id (AuditFilter.Target).
	Cascade []AuditTarget `json:"cascade,omitempty"`
	Related []AuditTarget `json:"related,omitempty"`
}

// SetOthers sets Cascade (for a delete) or Related (for any other action) to the records of
// changes other than the target, each once: what the write changed besides its target. The
// backends call it with every change of the write's transaction.
func (r *AuditRecord) SetOthers(changes []Change) {
	others := auditOthers(AuditTarget{Kind: r.TargetKind, ID: r.TargetID}, changes)
	if r.Action == AuditDelete {
		r.Cascade = others
	} else {
		r.Related = others
	}
}

// FieldChange is one changed field: its JSON name and its values before and after, as the API
// shows them (null when the record did not exist before or does not after).
type FieldChange struct {
	Field string          `json:"field"`
	Old   json.RawMessage `json:"old"`
	New   json.RawMessage `json:"new"`
}

// AuditTarget names a record.
type AuditTarget struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// AuditFilter selects audit records for Service.ListAudit. Empty strings and zero times match
// everything; Limit 0 means no limit.
type AuditFilter struct {
	Target string // the target id, or the id of one of the record's Cascade or Related
	Actor  string // the actor's key id or user id
	Action string
	Since  int64 // Unix seconds, inclusive
	Until  int64 // Unix seconds, exclusive
	Limit  int
	Offset int
}

// AuditRetention bounds the audit log for Service.PruneAudit: at most MaxCount records (0: no
// bound) and none older than MaxAge (0: no bound).
type AuditRetention struct {
	MaxCount int
	MaxAge   time.Duration
}

// secretFields are the JSON fields never copied into a record, at any depth: a key's
// plaintext (x_api_key, secret) and its hash. The stored key record carries "hash"; an API
// response carries "x_api_key"; neither may reach the log whatever a caller passes.
var secretFields = []string{"hash", "secret", "x_api_key"}

// noiseFields change on every write and say nothing an admin did.
var noiseFields = []string{"updated_at", "last_used_at"}

type requestIDKey struct{}

// ContextWithRequestID returns ctx carrying the id of the HTTP request it serves; the server
// sets it for every request, and audit records carry it.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id stored in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// auditSeq orders the records this process makes within one clock tick.
var auditSeq atomic.Uint32

// auditIDPrefix starts every record id; the rest begins with the time, so that ids sort by time.
const auditIDPrefix = "audit-"

// NewAuditID returns a new record id for a record made at now: "audit-", 16 hex digits of
// Unix nanoseconds, 8 of a per-process sequence and 6 random base62 characters. Ids sort by
// time (and, within one process, by creation), which is the order the log is listed in.
func NewAuditID(now time.Time) string {
	return fmt.Sprintf("%s%016x%08x%s", auditIDPrefix, now.UnixNano(), auditSeq.Add(1), newID("", 6))
}

// AuditIDFloor returns the smallest id a record made at or after t can have: a backend seeks
// there for AuditFilter.Since and Until.
func AuditIDFloor(t time.Time) string {
	return fmt.Sprintf("%s%016x", auditIDPrefix, max(t.UnixNano(), 0))
}

// NewAuditRecord builds the record of a write made at now for the caller in ctx (CallerFrom)
// and its request (RequestIDFrom): action on the record kind/id, whose API form was before
// (nil on create) and is after (nil on delete). The changed fields are the top-level JSON
// fields whose values differ, without updated_at and last_used_at, and without any field
// named hash, secret or x_api_key at any depth.
func NewAuditRecord(ctx context.Context, now time.Time, action, kind, id string, before, after any) (*AuditRecord, error) {
	rec := &AuditRecord{
		ID:         NewAuditID(now),
		Time:       now.Unix(),
		Action:     action,
		TargetKind: kind,
		TargetID:   id,
		RequestID:  RequestIDFrom(ctx),
		Changes:    []FieldChange{},
	}
	if c := CallerFrom(ctx); c != nil {
		if c.Key != nil {
			rec.ActorKeyID = c.Key.ID
			rec.ActorUserID = c.Key.UserID
		}
		if c.User != nil {
			rec.ActorUserID = c.User.ID
		}
	}
	old, err := auditFields(before)
	if err != nil {
		return nil, err
	}
	cur, err := auditFields(after)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(old)+len(cur))
	for f := range old {
		names = append(names, f)
	}
	for f := range cur {
		if _, ok := old[f]; !ok {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	for _, f := range names {
		o, n := old[f], cur[f]
		if bytes.Equal(o, n) {
			continue
		}
		rec.Changes = append(rec.Changes, FieldChange{Field: f, Old: orNull(o), New: orNull(n)})
	}
	return rec, nil
}

// auditFields returns the top-level JSON fields of v (nil: none), secrets removed at every
// depth and noise fields dropped.
func auditFields(v any) (map[string]json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers kept exactly as the API writes them
	if err := dec.Decode(&generic); err != nil {
		return nil, fmt.Errorf("audit: decode record: %w", err)
	}
	obj, ok := scrub(generic).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("audit: a record must encode as a JSON object, not %.20s", b)
	}
	out := make(map[string]json.RawMessage, len(obj))
	for f, val := range obj {
		if slices.Contains(noiseFields, f) {
			continue
		}
		raw, err := json.Marshal(val)
		if err != nil {
			return nil, fmt.Errorf("audit: encode field %s: %w", f, err)
		}
		out[f] = raw
	}
	return out, nil
}

// scrub removes every object member named as a secret field (case-insensitive), at any depth.
func scrub(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for f, val := range x {
			if slices.Contains(secretFields, strings.ToLower(f)) {
				delete(x, f)
				continue
			}
			x[f] = scrub(val)
		}
	case []any:
		for i := range x {
			x[i] = scrub(x[i])
		}
	}
	return v
}

func orNull(b json.RawMessage) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

// Matches reports whether r is selected by f (paging aside).
func (f AuditFilter) Matches(r *AuditRecord) bool {
	switch {
	case f.Action != "" && r.Action != f.Action,
		f.Actor != "" && r.ActorKeyID != f.Actor && r.ActorUserID != f.Actor,
		f.Since != 0 && r.Time < f.Since,
		f.Until != 0 && r.Time >= f.Until:
		return false
	case f.Target == "" || r.TargetID == f.Target:
		return true
	}
	is := func(t AuditTarget) bool { return t.ID == f.Target }
	return slices.ContainsFunc(r.Cascade, is) || slices.ContainsFunc(r.Related, is)
}

// TimeOnly reports whether f selects by time alone. Record ids begin with the time their
// Time is taken from, so such a selection is exactly a range of ids: a backend can count it
// without decoding a record and decode only the page.
func (f AuditFilter) TimeOnly() bool {
	return f.Target == "" && f.Actor == "" && f.Action == ""
}

// MayMatch reports whether the stored JSON raw of a record may match f: false when raw lacks
// a value f requires, a test much cheaper than decoding. A value that JSON would escape is not
// tested (MayMatch says true), so a false is always right.
func (f AuditFilter) MayMatch(raw []byte) bool {
	for _, v := range []string{f.Target, f.Actor, f.Action} {
		if v != "" && plainJSON(v) && !bytes.Contains(raw, []byte(v)) {
			return false
		}
	}
	return true
}

// plainJSON reports whether s is written as itself inside a JSON string.
func plainJSON(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// Page returns the bounds [lo, hi) of f's page in a selection of n records.
func (f AuditFilter) Page(n int) (lo, hi int) {
	lo = min(max(f.Offset, 0), n)
	hi = n
	if f.Limit > 0 {
		hi = min(lo+f.Limit, n)
	}
	return lo, hi
}

// SelectAudit is Service.ListAudit's selection from the records of f's time range, newest
// first: those f matches, and the page f.Offset, f.Limit of them (Limit 0: no limit), with
// the number matching in all.
func SelectAudit(newestFirst []*AuditRecord, f AuditFilter) ([]*AuditRecord, int) {
	sel := make([]*AuditRecord, 0, len(newestFirst))
	for _, r := range newestFirst {
		if f.Matches(r) {
			sel = append(sel, r)
		}
	}
	lo, hi := f.Page(len(sel))
	return slices.Clone(sel[lo:hi]), len(sel)
}

// auditOthers returns the records of changes other than target, each once.
func auditOthers(target AuditTarget, changes []Change) []AuditTarget {
	var out []AuditTarget
	for _, c := range changes {
		t := AuditTarget(c)
		if t != target && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
