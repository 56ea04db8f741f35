package keys

import (
	"encoding/hex"
	"strings"
)

// BulkKey is one key for a store's bulk import (badgerstore.Store.ImportKeys): the key as the
// store keeps it and its hash (hex(HMAC-SHA512(key = secret, message = id)), as Generate
// returns it or a PlaceOS row holds it).
type BulkKey struct {
	Key  APIKey
	Hash string
}

// CheckImport checks and normalises k, a key to import with the given hash, as every bulk
// import does: an id of 32 lowercase hex characters, a hash of 128 hex digits, a name and a
// user_id, scopes within the limits of CreateKey (normalised in place) and a valid permission
// (empty: user). It returns EINVALID naming the key and the problem. The name's uniqueness
// and the user's level are not checked: an import's caller guarantees them.
func CheckImport(k *APIKey, hash string) error {
	if len(k.ID) != idLen || !isLowerHex(k.ID) {
		return Errorf(EINVALID, "import key %q: id is not 32 lowercase hex characters", k.ID)
	}
	if _, err := hex.DecodeString(hash); err != nil || len(hash) != 128 {
		return Errorf(EINVALID, "import key %s: hash is not 128 hex digits", k.ID)
	}
	if strings.TrimSpace(k.Name) == "" || k.UserID == "" {
		return Errorf(EINVALID, "import key %s: name and user_id are required", k.ID)
	}
	if fs := CheckScopeLimits(k.Scopes, nil); len(fs) > 0 {
		return Errorf(EINVALID, "import key %s: scopes %s", k.ID, fs[0].Reason)
	}
	scopes, err := NormalizeScopes(k.Scopes)
	if err != nil {
		return err
	}
	k.Scopes = scopes
	if k.Permissions == "" {
		k.Permissions = PermissionUser
	}
	if !k.Permissions.Valid() {
		return Errorf(EINVALID, "import key %s: permissions %q", k.ID, k.Permissions)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
