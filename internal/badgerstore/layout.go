package badgerstore

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The key layout: which Badger key holds each record and index, and how records are encoded
// (JSON) and read back.

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
//	a/<audit record id>              AuditRecord (JSON)   (the audit log, audit.go)
//	t/<kind>/<id>                    keys.Tombstone (JSON: deleted_at) (deletion marks)
//
// A deletion mark (tombstone) is written in the transaction of every delete of a domain,
// user or key (kind "domain", "user", "key"), each record of a cascade included, and never
// removed: an import refuses an id that carries one (keys/tombstone.go, docs/import.md).
const (
	pDomain       = "d/"
	pDomainHost   = "dh/"
	pUser         = "u/"
	pUserByDomain = "ud/"
	pKey          = "k/"
	pKeyByDomain  = "kd/"
	pKeyByUser    = "ku/"
	pKeyName      = "kn/"
	pTombstone    = "t/"
)

func kDomain(id string) []byte            { return []byte(pDomain + id) }
func kDomainHost(host string) []byte      { return []byte(pDomainHost + host) }
func kUser(id string) []byte              { return []byte(pUser + id) }
func kUserByDomain(dom, id string) []byte { return []byte(pUserByDomain + dom + "/" + id) }
func kKey(id string) []byte               { return []byte(pKey + id) }
func kKeyByDomain(dom, id string) []byte  { return []byte(pKeyByDomain + dom + "/" + id) }
func kKeyByUser(user, id string) []byte   { return []byte(pKeyByUser + user + "/" + id) }
func kTombstone(kind, id string) []byte   { return []byte(pTombstone + kind + "/" + id) }
func kKeyName(dom, name string) []byte {
	return []byte(pKeyName + dom + "/" + keys.NameKey(name))
}

// keyRecord is the stored form of a key: the API fields plus the hash.
type keyRecord struct {
	keys.APIKey
	Hash string `json:"hash"`
}

// putKey writes the key record with its hash and its by-domain and by-user index entries (the
// name index is the caller's: it changes only on create and rename).
func putKey(w setter, k *keys.APIKey, hash string) error {
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
func getKey(txn *badger.Txn, id string) (*keys.APIKey, error) {
	var rec keyRecord
	if err := getJSON(txn, kKey(id), &rec); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, keys.NotFound("key", id)
		}
		return nil, err
	}
	k := rec.APIKey
	k.Hash = rec.Hash
	return &k, nil
}

func getUser(txn *badger.Txn, id string) (*keys.User, error) {
	var u keys.User
	if err := getJSON(txn, kUser(id), &u); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, keys.NotFound("user", id)
		}
		return nil, err
	}
	return &u, nil
}

func getDomain(txn *badger.Txn, id string) (*keys.Domain, error) {
	var d keys.Domain
	if err := getJSON(txn, kDomain(id), &d); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, keys.NotFound("domain", id)
		}
		return nil, err
	}
	return &d, nil
}

// markDeleted writes the deletion mark of the record kind/id, deleted in t at t.now.
func markDeleted(t *tx, kind, id string) error {
	return t.txn.Set(kTombstone(kind, id), keys.EncodeTombstone(t.now))
}

// deletedAt returns when the record kind/id was deleted (Unix seconds), or ok false.
func deletedAt(txn *badger.Txn, kind, id string) (at int64, ok bool, err error) {
	item, err := txn.Get(kTombstone(kind, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = item.Value(func(b []byte) error {
		at, err = keys.DecodeTombstone(b)
		return err
	})
	return at, err == nil, err
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
