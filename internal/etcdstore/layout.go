package etcdstore

import (
	"encoding/json"
	"fmt"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Key layout (relative to the store's prefix; see doc.go).
const (
	pDomain       = "d/"
	pDomainHost   = "dh/"
	pUser         = "u/"
	pUserByDomain = "ud/"
	pKey          = "k/"
	pKeyByDomain  = "kd/"
	pKeyByUser    = "ku/"
	pKeyName      = "kn/"
	pTombstone    = "t/" // t/<kind>/<id>: deletion marks (doc.go)
)

func kDomain(id string) string            { return pDomain + id }
func kDomainHost(host string) string      { return pDomainHost + host }
func kUser(id string) string              { return pUser + id }
func kUserByDomain(dom, id string) string { return pUserByDomain + dom + "/" + id }
func kKey(id string) string               { return pKey + id }
func kKeyByDomain(dom, user, id string) string {
	return pKeyByDomain + dom + "/" + user + "/" + id
}
func kKeyByUser(user, id string) string { return pKeyByUser + user + "/" + id }
func kKeyName(dom, name string) string  { return pKeyName + dom + "/" + keys.NameKey(name) }
func kTombstone(kind, id string) string { return pTombstone + kind + "/" + id }

// keyRecord is the stored form of a key: the API fields plus the hash.
type keyRecord struct {
	keys.APIKey
	Hash string `json:"hash"`
}

func decodeKey(b []byte) (*keys.APIKey, error) {
	var rec keyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	k := rec.APIKey
	k.Hash = rec.Hash
	return &k, nil
}

func encodeKey(k *keys.APIKey, hash string) string {
	rec := keyRecord{APIKey: *k, Hash: hash}
	rec.APIKey.Hash = ""
	b, _ := json.Marshal(&rec) // a struct of strings and numbers always marshals
	return string(b)
}

func encode(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// putKey writes the key record with its hash and its by-domain and by-user index entries (the
// name index is the caller's: it changes only on create and rename).
func putKey(t *tx, k *keys.APIKey, hash string) {
	t.put(kKey(k.ID), encodeKey(k, hash))
	t.put(kKeyByDomain(k.AuthorityID, k.UserID, k.ID), "")
	t.put(kKeyByUser(k.UserID, k.ID), "")
}

func getKey(t *tx, id string) (*keys.APIKey, error) {
	b, ok, err := t.get(kKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, keys.NotFound("key", id)
	}
	return decodeKey(b)
}

func getUser(t *tx, id string) (*keys.User, error) {
	var u keys.User
	if err := getJSON(t, kUser(id), &u, "user", id); err != nil {
		return nil, err
	}
	return &u, nil
}

func getDomain(t *tx, id string) (*keys.Domain, error) {
	var d keys.Domain
	if err := getJSON(t, kDomain(id), &d, "domain", id); err != nil {
		return nil, err
	}
	return &d, nil
}

// markDeleted writes, in t, the deletion mark of the record kind/id, deleted now: one more
// operation of the delete's Txn.
func markDeleted(t *tx, kind, id string) {
	t.put(kTombstone(kind, id), string(keys.EncodeTombstone(t.s.now())))
}

// deletedAt returns when the record kind/id was deleted (Unix seconds), or ok false; the read
// is among the commit's compares, so a delete committed meanwhile makes the Txn run again.
func deletedAt(t *tx, kind, id string) (at int64, ok bool, err error) {
	b, ok, err := t.get(kTombstone(kind, id))
	if err != nil || !ok {
		return 0, false, err
	}
	at, err = keys.DecodeTombstone(b)
	return at, err == nil, err
}

func getJSON(t *tx, key string, v any, kind, id string) error {
	b, ok, err := t.get(key)
	if err != nil {
		return err
	}
	if !ok {
		return keys.NotFound(kind, id)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}
