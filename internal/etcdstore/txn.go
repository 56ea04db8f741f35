package etcdstore

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The transaction runner: every write runs in update (the caller re-check, retries on
// conflict, change hooks), every read in view. A tx reads at one revision, remembers what it
// read, buffers its writes (later reads see them) and commits as one etcd Txn guarded by
// compares of its read set.

// maxAttempts bounds the retries of a transaction that lost a conflict to a concurrent one.
const maxAttempts = 10

// errTooBig is the ECONFLICT of a transaction beyond etcd's --max-txn-ops.
func errTooBig(what string, n, limit int) error {
	return keys.Errorf(keys.ECONFLICT, "too many records to change in one transaction (%d %s, etcd allows %d): delete some of them first", n, what, limit)
}

type tx struct {
	s   *Store
	ctx context.Context
	rev int64 // the snapshot's revision; 0 until the first read

	reads     map[string]int64 // key → mod revision read (0: absent)
	prefixes  []string         // prefixes listed
	writes    map[string]*string
	order     []string
	rangeDels []string
	changes   []keys.Change
	audits    []pendingAudit // the audit records of this write (audit.go), put by update
}

func (s *Store) newTx(ctx context.Context) *tx {
	return &tx{s: s, ctx: ctx, reads: map[string]int64{}, writes: map[string]*string{}}
}

func (t *tx) opts(o ...clientv3.OpOption) []clientv3.OpOption {
	if t.rev > 0 {
		o = append(o, clientv3.WithRev(t.rev))
	}
	return o
}

func (t *tx) call(fn func(ctx context.Context) (*clientv3.GetResponse, error)) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
	defer cancel()
	resp, err := fn(ctx)
	if err != nil {
		return nil, t.s.wrap(t.ctx, err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

// deletedByRange reports whether key lies under a prefix this tx deletes.
func (t *tx) deletedByRange(key string) bool {
	for _, p := range t.rangeDels {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// get returns the value at key (relative to the prefix) as of the snapshot, with this tx's
// writes applied.
func (t *tx) get(key string) ([]byte, bool, error) {
	if v, ok := t.writes[key]; ok {
		if v == nil {
			return nil, false, nil
		}
		return []byte(*v), true, nil
	}
	if t.deletedByRange(key) {
		return nil, false, nil
	}
	resp, err := t.call(func(ctx context.Context) (*clientv3.GetResponse, error) {
		return t.s.cli.Get(ctx, t.s.prefix+key, t.opts()...)
	})
	if err != nil {
		return nil, false, err
	}
	if len(resp.Kvs) == 0 {
		if _, seen := t.reads[key]; !seen {
			t.reads[key] = 0
		}
		return nil, false, nil
	}
	kv := resp.Kvs[0]
	if _, seen := t.reads[key]; !seen {
		t.reads[key] = kv.ModRevision
	}
	return kv.Value, true, nil
}

func (t *tx) exists(key string) (bool, error) {
	_, ok, err := t.get(key)
	return ok, err
}

// collect returns the rest of every key under prefix (index keys: the ids), sorted, with
// this tx's writes applied. A write's commit then requires that nothing under prefix was
// written after the snapshot (no phantom).
func (t *tx) collect(prefix string) ([]string, error) {
	resp, err := t.call(func(ctx context.Context) (*clientv3.GetResponse, error) {
		return t.s.cli.Get(ctx, t.s.prefix+prefix, t.opts(clientv3.WithPrefix(), clientv3.WithKeysOnly())...)
	})
	if err != nil {
		return nil, err
	}
	if !slices.Contains(t.prefixes, prefix) {
		t.prefixes = append(t.prefixes, prefix)
	}
	var out []string
	for _, kv := range resp.Kvs {
		key := string(kv.Key[len(t.s.prefix):])
		if v, ok := t.writes[key]; (ok && v == nil) || (!ok && t.deletedByRange(key)) {
			continue
		}
		out = append(out, key[len(prefix):])
	}
	for key, v := range t.writes {
		if v != nil && strings.HasPrefix(key, prefix) && !slices.Contains(out, key[len(prefix):]) {
			out = append(out, key[len(prefix):])
		}
	}
	sort.Strings(out)
	return out, nil
}

// getMany returns the values at keys (nil where absent), read at the snapshot in as few
// round trips as etcd's transaction limit allows. For views only: it records no reads.
func (t *tx) getMany(ks []string) ([][]byte, error) {
	out := make([][]byte, 0, len(ks))
	for len(ks) > 0 {
		chunk := ks[:min(len(ks), t.s.maxOps)]
		ks = ks[len(chunk):]
		if t.rev == 0 {
			if _, _, err := t.get(chunk[0]); err != nil { // fixes the snapshot
				return nil, err
			}
		}
		ops := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = clientv3.OpGet(t.s.prefix+k, clientv3.WithRev(t.rev))
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
		resp, err := t.s.cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, t.s.wrap(t.ctx, err)
		}
		for _, r := range resp.Responses {
			var v []byte
			if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
				v = kvs[0].Value
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// scan returns every key (relative to prefix) and value under prefix at the snapshot. For
// views only.
func (t *tx) scan(prefix string) (ks []string, vs [][]byte, err error) {
	resp, err := t.call(func(ctx context.Context) (*clientv3.GetResponse, error) {
		return t.s.cli.Get(ctx, t.s.prefix+prefix, t.opts(clientv3.WithPrefix())...)
	})
	if err != nil {
		return nil, nil, err
	}
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key[len(t.s.prefix)+len(prefix):]))
		vs = append(vs, kv.Value)
	}
	return ks, vs, nil
}

func (t *tx) put(key, val string) {
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = &val
}

func (t *tx) del(key string) {
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = nil
}

// delPrefix deletes every key under prefix in one operation.
func (t *tx) delPrefix(prefix string) {
	t.rangeDels = append(t.rangeDels, prefix)
}

func (t *tx) changed(kind, id string) {
	t.changes = append(t.changes, keys.Change{Kind: kind, ID: id})
}

// commit sends the tx as one etcd Txn: ok false if a compare failed (a concurrent write).
func (t *tx) commit() (ok bool, rev int64, err error) {
	var cmps []clientv3.Cmp
	readKeys := make([]string, 0, len(t.reads))
	for k := range t.reads {
		readKeys = append(readKeys, k)
	}
	sort.Strings(readKeys)
	for _, k := range readKeys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.prefix+k), "=", t.reads[k]))
	}
	for _, p := range t.prefixes {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.prefix+p).WithPrefix(), "<", t.rev+1))
	}
	var ops []clientv3.Op
	for _, p := range t.rangeDels {
		ops = append(ops, clientv3.OpDelete(t.s.prefix+p, clientv3.WithPrefix()))
	}
	for _, k := range t.order {
		v := t.writes[k]
		switch {
		case v != nil:
			ops = append(ops, clientv3.OpPut(t.s.prefix+k, *v))
		case !t.deletedByRange(k): // a delete a range delete already covers costs nothing
			ops = append(ops, clientv3.OpDelete(t.s.prefix+k))
		}
	}
	if len(cmps) > t.s.maxOps {
		return false, 0, errTooBig("records read", len(cmps), t.s.maxOps)
	}
	if len(ops) > t.s.maxOps {
		return false, 0, errTooBig("writes", len(ops), t.s.maxOps)
	}
	ticket := t.s.beginWrite()
	ctx, cancel := context.WithTimeout(t.ctx, t.s.timeout)
	resp, err := t.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	cancel()
	if err != nil {
		t.s.endWrite(ticket, 0)
		return false, 0, t.s.wrap(t.ctx, err)
	}
	if !resp.Succeeded {
		t.s.endWrite(ticket, 0)
		return false, 0, nil
	}
	t.s.endWrite(ticket, resp.Header.Revision)
	return true, resp.Header.Revision, nil
}

// update runs fn in a transaction, retrying on conflicts, then calls the change hooks.
//
// A write made for an admin-API caller (CallerFrom(ctx) with a key) first re-reads the
// caller's key and user in the same transaction and is refused if either changed since the
// request was authorized (recheckCaller); both reads are in the commit's compares, so a
// revocation or demotion committed before this write makes it fail its compare, and it is
// re-run and judged again. Internal writes (bootstrap, usage) carry no caller.
func (s *Store) update(ctx context.Context, fn func(*tx) error) error {
	if err := s.Unreachable(); err != nil {
		return err // fail at once, not after the request timeout (confirm.go)
	}
	caller := keys.CallerFrom(ctx)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := s.newTx(ctx)
		if err := recheckCaller(t, caller, s.now()); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return s.wrap(ctx, err)
		}
		if err := t.putAudit(); err != nil {
			return err
		}
		if len(t.writes) == 0 && len(t.rangeDels) == 0 {
			return nil
		}
		ok, _, err := t.commit()
		switch {
		case err != nil:
			return err
		case ok:
			s.notify(t.changes)
			return nil
		case attempt >= maxAttempts:
			return keys.Errorf(keys.ECONFLICT, "too many concurrent changes, try again")
		}
	}
}

// view runs fn on a snapshot. While the last heartbeat found etcd not answering a read, view
// and update fail at once with ErrUnavailable instead of waiting out the request timeout.
func (s *Store) view(ctx context.Context, fn func(*tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.Unreachable(); err != nil {
		return err // fail at once: the heartbeat notices within its interval when etcd is back
	}
	return s.wrap(ctx, fn(s.newTx(ctx)))
}

// recheckCaller applies keys.RecheckCaller (the rule) with reads of the write transaction t,
// so that both records are in the commit's compares.
func recheckCaller(t *tx, caller *keys.Caller, now time.Time) error {
	return keys.RecheckCaller(caller, now,
		func(id string) (*keys.APIKey, error) { return getKey(t, id) },
		func(id string) (*keys.User, error) { return getUser(t, id) })
}
