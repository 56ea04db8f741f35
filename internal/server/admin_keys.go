package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The admin API's key handlers (docs/http-api.md#api-keys). Each is a maker taking the
// keys.Service it works on; routes.go maps them behind the policy's authorization. Request and
// response types are local to this file.

// keyResponse is a key as the API shows it: x_api_key is the plaintext on create (and rotate),
// else null; its JSON also carries the computed state (MarshalJSON, admin_rotate.go).
type keyResponse struct {
	*keys.APIKey
	XAPIKey *string `json:"x_api_key"`
}

type createKeyRequest struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Scopes      []string        `json:"scopes"`
	UserID      string          `json:"user_id"`
	Permissions keys.Permission `json:"permissions"`
	ExpiresAt   *int64          `json:"expires_at"`
	// The key's limits (docs/limits.md); absent or null: none.
	AllowedCIDRs []string        `json:"allowed_cidrs"`
	RateLimit    *keys.RateLimit `json:"rate_limit"`
}

type updateKeyRequest struct {
	Name        *string            `json:"name"`
	Description *string            `json:"description"`
	Scopes      *[]string          `json:"scopes"`
	Permissions *keys.Permission   `json:"permissions"`
	ExpiresAt   keys.NullableInt64 `json:"expires_at"`
	// null (or an empty list) clears a limit (docs/limits.md).
	AllowedCIDRs keys.Nullable[[]string]       `json:"allowed_cidrs"`
	RateLimit    keys.Nullable[keys.RateLimit] `json:"rate_limit"`
}

// maxListLimit caps ?limit=, as PlaceOS clamps it to 0-10000.
const maxListLimit = 10000

// handleListKeys lists keys: ?authority_id= (one domain), ?q= (name or description), ?limit=
// (default 100) and ?offset=, with X-Total-Count, Content-Range and Link (rel="next") headers.
func handleListKeys(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, err := queryInt(c, "limit", 100)
		if err != nil {
			writeError(c, err)
			return
		}
		offset, err := queryInt(c, "offset", 0)
		if err != nil {
			writeError(c, err)
			return
		}
		limit = min(limit, maxListLimit)
		f := keys.KeyFilter{AuthorityID: c.Query("authority_id"), Q: c.Query("q"), Limit: limit, Offset: offset}
		list := []*keys.APIKey{}
		total := 0
		if limit > 0 {
			if list, total, err = s.ListKeys(c.Request.Context(), f); err != nil {
				writeError(c, err)
				return
			}
		} else if _, total, err = s.ListKeys(c.Request.Context(), keys.KeyFilter{AuthorityID: f.AuthorityID, Q: f.Q, Limit: 1}); err != nil {
			writeError(c, err)
			return
		}
		setPageHeaders(c, "api_key", offset, len(list), total, limit, "authority_id", "q")
		out := make([]keyResponse, len(list))
		for i, k := range list {
			out[i] = keyResponse{APIKey: k}
		}
		c.JSON(http.StatusOK, out)
	}
}

// setPageHeaders sets X-Total-Count, Content-Range ("api_key 0-9/42") and, when more follow,
// Link with rel="next", carrying the listing's own query parameters params.
func setPageHeaders(c *gin.Context, unit string, offset, n, total, limit int, params ...string) {
	c.Header("X-Total-Count", strconv.Itoa(total))
	if n > 0 {
		c.Header("Content-Range", fmt.Sprintf("%s %d-%d/%d", unit, offset, offset+n-1, total))
	} else {
		c.Header("Content-Range", fmt.Sprintf("%s */%d", unit, total))
	}
	if next := offset + n; n > 0 && next < total {
		// Only the listing's own parameters are carried over: a key given as a URL parameter,
		// under any name, must not be echoed in a response.
		q := url.Values{}
		for _, name := range params {
			if v, ok := c.GetQuery(name); ok {
				q.Set(name, v)
			}
		}
		q.Set("offset", strconv.Itoa(next))
		q.Set("limit", strconv.Itoa(limit))
		c.Header("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, c.Request.URL.Path, q.Encode()))
	}
}

func queryInt(c *gin.Context, name string, def int) (int, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		// The value is not echoed: a URL parameter may hold anything, a key included.
		return 0, keys.Errorf(keys.EINVALID, "query parameter %s must be a non-negative integer", name)
	}
	return n, nil
}

// handleCreateKey creates a key: 201 with the key and its plaintext in x_api_key, shown once.
func handleCreateKey(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req createKeyRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		// The minting cap (keys/grant.go) on the key as it will be stored: an empty permission is
		// stored as user; a caller whose key expires mints only keys that expire no later.
		// Malformed scopes are left to the store (400).
		if err := keys.CallerFrom(c.Request.Context()).CheckMint(&keys.APIKey{
			Scopes: req.Scopes, Permissions: req.Permissions, ExpiresAt: req.ExpiresAt, AllowedCIDRs: req.AllowedCIDRs,
		}); err != nil {
			writeError(c, err)
			return
		}
		k := &keys.APIKey{
			Name: req.Name, Description: req.Description, Scopes: req.Scopes, UserID: req.UserID,
			Permissions: req.Permissions, ExpiresAt: req.ExpiresAt,
			AllowedCIDRs: req.AllowedCIDRs, RateLimit: req.RateLimit,
		}
		plaintext, err := s.CreateKey(c.Request.Context(), k)
		if err != nil {
			writeError(c, err)
			return
		}
		shown := string(plaintext)
		c.JSON(http.StatusCreated, keyResponse{APIKey: k, XAPIKey: &shown})
	}
}

// handleShowKey shows one key (x_api_key null), or 404.
func handleShowKey(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		k, err := s.GetKey(c.Request.Context(), c.Param("id"))
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, keyResponse{APIKey: k})
	}
}

// handleUpdateKey changes the fields given (PATCH and PUT alike, as PlaceOS): name,
// description, scopes, permissions, expires_at (null: never expires). The caller must be able
// to mint the key both as it is and as it will be (keys/grant.go): an update can neither widen a
// key, the caller's own included, nor touch a key stronger than the caller. The check runs in
// the store's transaction, against the record the update replaces.
func handleUpdateKey(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req updateKeyRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		k, err := s.UpdateKey(c.Request.Context(), c.Param("id"), keys.KeyUpdate{
			Name: req.Name, Description: req.Description, Scopes: req.Scopes, Permissions: req.Permissions,
			ExpiresAt: req.ExpiresAt, Check: keys.CallerFrom(c.Request.Context()).CheckKeyChange,
			AllowedCIDRs: req.AllowedCIDRs, RateLimit: req.RateLimit,
		})
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, keyResponse{APIKey: k})
	}
}

// handleDeleteKey deletes a key: 202 with no body; the key is refused from the next request on.
// The caller must be able to mint the key as it is (the minting cap, keys/grant.go): no key deletes
// a stronger one. The check runs in the store's transaction, against the record deleted.
func handleDeleteKey(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.DeleteKey(c.Request.Context(), c.Param("id"), keys.CallerFrom(c.Request.Context()).CheckKeyDelete); err != nil {
			writeError(c, err)
			return
		}
		c.Status(http.StatusAccepted)
	}
}

type inspectUser struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

type inspectResponse struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	AuthorityID string          `json:"authority_id"`
	User        inspectUser     `json:"user"`
	Scopes      []string        `json:"scopes"`
	Permissions keys.Permission `json:"permissions"`
	ExpiresAt   *int64          `json:"expires_at"`
}

// handleInspect describes the calling key: id, name, domain, user (id, name, email only),
// scopes, the effective permissions (the key's level capped at its user's) and expiry.
func handleInspect() gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := keys.CallerFrom(c.Request.Context())
		if caller == nil || caller.Key == nil {
			writeError(c, keys.Errorf(keys.EUNAUTHORIZED, "missing credentials"))
			return
		}
		k, u := caller.Key, caller.User
		c.JSON(http.StatusOK, inspectResponse{
			ID: k.ID, Name: k.Name, AuthorityID: k.AuthorityID,
			User:   inspectUser{ID: u.ID, Name: u.Name, Email: u.Email},
			Scopes: k.Scopes, Permissions: caller.Permissions, ExpiresAt: k.ExpiresAt,
		})
	}
}
