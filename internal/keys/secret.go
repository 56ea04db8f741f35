package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"sync"
)

// Key material: a key string is "<id>.<secret>", id 32 lowercase hex characters, secret 32
// random bytes as 43 characters of unpadded base64url (docs/keys.md#key-format).
const (
	idLen     = 32
	secretLen = 43
	keyLen    = idLen + 1 + secretLen
	redacted  = "REDACTED"
)

// Secret is a plaintext API key. Its String, Format and LogValue redact it (keeping the key id
// when the shape is valid), so it cannot leak into logs by accident; string(s) and JSON
// marshalling give the plaintext, for the one create response that carries it.
type Secret string

// String returns the redacted form "<id>.REDACTED".
func (s Secret) String() string {
	if id, _, ok := ParseKey(string(s)); ok {
		return id + "." + redacted
	}
	return redacted
}

// Format implements fmt.Formatter so that every verb (%v, %s, %q, %x, %#v...) is redacted.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Generate makes a new key: a random id, a random secret, the plaintext "<id>.<secret>" to hand
// to the user once, and the hash to store: hex(HMAC-SHA512(key = secret, message = id)).
func Generate() (plaintext Secret, id, hash string, err error) {
	var raw [16 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", "", fmt.Errorf("generate key: %w", err)
	}
	id = hex.EncodeToString(raw[:16])
	secret := base64.RawURLEncoding.EncodeToString(raw[16:])
	return Secret(id + "." + secret), id, HashKey(id, secret), nil
}

// b64val maps a base64url character to its value, or -1.
var b64val = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(alphabet) {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// ParseKey splits a presented key into id and secret if, and only if, it has the exact shape
// of a key: 32 characters of [0-9a-f], ".", then 43 characters of [A-Za-z0-9_-] that are the
// canonical unpadded base64url encoding of 32 bytes (the last character carries 4 bits, so its
// 2 low bits must be zero). It does not allocate. Anything else, including a valid key with
// trailing bytes such as "\x00", is !ok: HMAC pads short keys with zero bytes, so the shape
// check is what makes a secret unique.
func ParseKey(s string) (id, secret string, ok bool) {
	if len(s) != keyLen || s[idLen] != '.' {
		return "", "", false
	}
	for i := range idLen {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", "", false
		}
	}
	for i := idLen + 1; i < keyLen; i++ {
		if b64val[s[i]] < 0 {
			return "", "", false
		}
	}
	if b64val[s[keyLen-1]]&3 != 0 {
		return "", "", false
	}
	return s[:idLen], s[idLen+1:], true
}

// HashKey returns hex(HMAC-SHA512(key = secret, message = id)), the stored form of a key
// (PlaceOS-compatible).
func HashKey(id, secret string) string {
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// hmacState is a reusable HMAC-SHA512 computation for keys up to one block (128 bytes), so
// that verification does not allocate.
type hmacState struct {
	h   hash.Hash
	pad [sha512.BlockSize]byte
	sum [sha512.Size]byte
	exp [sha512.Size]byte
	msg []byte
}

var hmacPool = sync.Pool{New: func() any { return &hmacState{h: sha512.New()} }}

// VerifyHash reports whether storedHex is the hash of id and secret. The comparison is in
// constant time (hmac.Equal) on the decoded bytes; a malformed storedHex never verifies.
func VerifyHash(id, secret, storedHex string) bool {
	if len(storedHex) != 2*sha512.Size {
		return false
	}
	if len(secret) > sha512.BlockSize {
		want, err := hex.DecodeString(storedHex)
		if err != nil {
			return false
		}
		m := hmac.New(sha512.New, []byte(secret))
		m.Write([]byte(id))
		return hmac.Equal(m.Sum(nil), want)
	}
	st := hmacPool.Get().(*hmacState)
	defer hmacPool.Put(st)
	if !decodeHex(st.exp[:], storedHex) {
		return false
	}
	// HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), K zero-padded to the block size.
	st.pad = [sha512.BlockSize]byte{}
	copy(st.pad[:], secret)
	for i := range st.pad {
		st.pad[i] ^= 0x36
	}
	st.h.Reset()
	st.h.Write(st.pad[:])
	st.msg = append(st.msg[:0], id...)
	st.h.Write(st.msg)
	inner := st.h.Sum(st.sum[:0])
	for i := range st.pad {
		st.pad[i] ^= 0x36 ^ 0x5c
	}
	st.h.Reset()
	st.h.Write(st.pad[:])
	st.h.Write(inner)
	return hmac.Equal(st.h.Sum(st.sum[:0]), st.exp[:])
}

// decodeHex decodes hex src (either case) into dst, len(dst) == len(src)/2, without allocating.
func decodeHex(dst []byte, src string) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, lo := hexval(src[2*i]), hexval(src[2*i+1])
		if hi < 0 || lo < 0 {
			return false
		}
		dst[i] = byte(hi<<4 | lo)
	}
	return true
}

func hexval(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
