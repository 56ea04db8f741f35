package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// Key rotation over the admin API (docs/http-api.md#api-keys, docs/keys.md#rotation), and the
// computed state every key response carries.

// rotateKeyRequest is the optional body of POST /api_keys/:id/rotate.
type rotateKeyRequest struct {
	// Overlap is a Go duration ("24h", "90m", "0s"), 0 to 720h; absent, null or "" means 24h.
	Overlap *string `json:"overlap"`
}

// handleRotateKey rotates a key: 201 with the new key and its plaintext in x_api_key, shown
// once. The old key keeps working for the overlap (never past its own expiry), then is
// refused as expired. The new key is a copy of the old, so the caller must be able to mint
// the old key as it is (the minting cap, keys/grant.go); the check runs in the store's
// transaction, against the record rotated. Like every admin write, the request must be
// declared JSON (415 otherwise, docs/http-api.md#request-bodies), but its body may be empty.
func handleRotateKey(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req rotateKeyRequest
		if err := bindOptionalJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		var text string
		if req.Overlap != nil {
			text = *req.Overlap
		}
		overlap, err := keys.ParseOverlap(text)
		if err != nil {
			writeError(c, err)
			return
		}
		caller := keys.CallerFrom(c.Request.Context())
		r, err := s.RotateKey(c.Request.Context(), c.Param("id"), keys.KeyRotation{
			Overlap: overlap,
			Check: func(old *keys.APIKey) error {
				return caller.CheckMint(old)
			},
		})
		if err != nil {
			writeError(c, err)
			return
		}
		shown := string(r.Plaintext)
		c.JSON(http.StatusCreated, keyResponse{APIKey: r.Key, XAPIKey: &shown})
	}
}

// bindOptionalJSON is bindWriteJSON for a body that may be empty (only white space): the
// request must still be declared JSON, and v is left as it is when there is no body.
func bindOptionalJSON(c *gin.Context, v any) error {
	if err := requireJSON(c.Request); err != nil {
		return err
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes)
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return keys.Errorf(keys.EINVALID, "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return keys.Errorf(keys.EINVALID, "malformed JSON body: %v", err)
	}
	return nil
}

// MarshalJSON writes the key as the API shows it with its computed "state" (keys.KeyState at
// the time of the response): "active", "rotating" while a key replaced by rotation still works,
// "expired". It is computed, not stored, because it changes with time alone.
func (r keyResponse) MarshalJSON() ([]byte, error) {
	type plain keyResponse // the same fields without this method
	var state string
	if r.APIKey != nil {
		state = keys.KeyState(r.APIKey, time.Now())
	}
	return json.Marshal(struct {
		plain
		State string `json:"state"`
	}{plain(r), state})
}
