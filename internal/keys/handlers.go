package keys

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// The admin API's Gin handlers (docs/http-api.md#admin-api). Each is a maker taking its
// dependencies; routes are mapped in one place, internal/server/routes.go, behind the policy's
// authorization. Request and response types are local to this file.

// keyResponse is a key as the API shows it: x_api_key is the plaintext on create, else null.
type keyResponse struct {
	*APIKey
	XAPIKey *string `json:"x_api_key"`
}

type createKeyRequest struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Scopes      []string   `json:"scopes"`
	UserID      string     `json:"user_id"`
	Permissions Permission `json:"permissions"`
	ExpiresAt   *int64     `json:"expires_at"`
}

type updateKeyRequest struct {
	Name        *string       `json:"name"`
	Description *string       `json:"description"`
	Scopes      *[]string     `json:"scopes"`
	Permissions *Permission   `json:"permissions"`
	ExpiresAt   NullableInt64 `json:"expires_at"`
}

// maxListLimit caps ?limit=, as PlaceOS clamps it to 0-10000.
const maxListLimit = 10000

// HandleListKeys lists keys: ?authority_id= (one domain), ?q= (name or description), ?limit=
// (default 100) and ?offset=, with X-Total-Count, Content-Range and Link (rel="next") headers.
func HandleListKeys(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		limit, err := queryInt(c, "limit", 100)
		if err != nil {
			WriteError(c, err)
			return
		}
		offset, err := queryInt(c, "offset", 0)
		if err != nil {
			WriteError(c, err)
			return
		}
		limit = min(limit, maxListLimit)
		f := KeyFilter{AuthorityID: c.Query("authority_id"), Q: c.Query("q"), Limit: limit, Offset: offset}
		list := []*APIKey{}
		total := 0
		if limit > 0 {
			if list, total, err = s.ListKeys(c.Request.Context(), f); err != nil {
				WriteError(c, err)
				return
			}
		} else if _, total, err = s.ListKeys(c.Request.Context(), KeyFilter{AuthorityID: f.AuthorityID, Q: f.Q, Limit: 1}); err != nil {
			WriteError(c, err)
			return
		}
		setPageHeaders(c, "api_key", offset, len(list), total, limit)
		out := make([]keyResponse, len(list))
		for i, k := range list {
			out[i] = keyResponse{APIKey: k}
		}
		c.JSON(http.StatusOK, out)
	}
}

// setPageHeaders sets X-Total-Count, Content-Range ("api_key 0-9/42") and, when more follow,
// Link with rel="next".
func setPageHeaders(c *gin.Context, unit string, offset, n, total, limit int) {
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
		for _, name := range []string{"authority_id", "q"} {
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
		return 0, Errorf(EINVALID, "query parameter %s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

// HandleCreateKey creates a key: 201 with the key and its plaintext in x_api_key, shown once.
func HandleCreateKey(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req createKeyRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		// The minting cap (grant.go) on the key as it will be stored: an empty permission is
		// stored as user; a caller whose key expires mints only keys that expire no later.
		// Malformed scopes are left to the store (400).
		if err := CallerFrom(c.Request.Context()).CheckGrant(req.Scopes, cmp.Or(req.Permissions, PermissionUser), req.ExpiresAt); err != nil {
			WriteError(c, err)
			return
		}
		k := &APIKey{
			Name: req.Name, Description: req.Description, Scopes: req.Scopes, UserID: req.UserID,
			Permissions: req.Permissions, ExpiresAt: req.ExpiresAt,
		}
		plaintext, err := s.CreateKey(c.Request.Context(), k)
		if err != nil {
			WriteError(c, err)
			return
		}
		shown := string(plaintext)
		c.JSON(http.StatusCreated, keyResponse{APIKey: k, XAPIKey: &shown})
	}
}

// HandleShowKey shows one key (x_api_key null), or 404.
func HandleShowKey(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		k, err := s.GetKey(c.Request.Context(), c.Param("id"))
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, keyResponse{APIKey: k})
	}
}

// HandleUpdateKey changes the fields given (PATCH and PUT alike, as PlaceOS): name,
// description, scopes, permissions, expires_at (null: never expires). The caller must be able
// to mint the key both as it is and as it will be (grant.go): an update can neither widen a
// key, the caller's own included, nor touch a key stronger than the caller. The check runs in
// the store's transaction, against the record the update replaces.
func HandleUpdateKey(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req updateKeyRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		k, err := s.UpdateKey(c.Request.Context(), c.Param("id"), KeyUpdate{
			Name: req.Name, Description: req.Description, Scopes: req.Scopes, Permissions: req.Permissions,
			ExpiresAt: req.ExpiresAt, Check: CallerFrom(c.Request.Context()).CheckKeyChange,
		})
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, keyResponse{APIKey: k})
	}
}

// HandleDeleteKey deletes a key: 202 with no body; the key is refused from the next request on.
// The caller must be able to mint the key as it is (the minting cap, grant.go): no key deletes
// a stronger one. The check runs in the store's transaction, against the record deleted.
func HandleDeleteKey(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := s.DeleteKey(c.Request.Context(), c.Param("id"), CallerFrom(c.Request.Context()).CheckKeyDelete); err != nil {
			WriteError(c, err)
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
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	AuthorityID string      `json:"authority_id"`
	User        inspectUser `json:"user"`
	Scopes      []string    `json:"scopes"`
	Permissions Permission  `json:"permissions"`
	ExpiresAt   *int64      `json:"expires_at"`
}

// HandleInspect describes the calling key: id, name, domain, user (id, name, email only),
// scopes, the effective permissions (the key's level capped at its user's) and expiry.
func HandleInspect() gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := CallerFrom(c.Request.Context())
		if caller == nil || caller.Key == nil {
			WriteError(c, Errorf(EUNAUTHORIZED, "missing credentials"))
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

type domainRequest struct {
	Name        *string `json:"name"`
	Domain      *string `json:"domain"`
	Description *string `json:"description"`
}

func (r domainRequest) apply(d *Domain) {
	setIf(&d.Name, r.Name)
	setIf(&d.Domain, r.Domain)
	setIf(&d.Description, r.Description)
}

// HandleListDomains lists every domain.
func HandleListDomains(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		list, err := s.ListDomains(c.Request.Context())
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Header("X-Total-Count", strconv.Itoa(len(list)))
		c.JSON(http.StatusOK, nonNil(list))
	}
}

// HandleCreateDomain creates a domain: 201 with the record.
func HandleCreateDomain(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req domainRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		d := &Domain{}
		req.apply(d)
		if err := s.CreateDomain(c.Request.Context(), d); err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, d)
	}
}

// HandleShowDomain shows one domain, or 404.
func HandleShowDomain(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		d, err := s.GetDomain(c.Request.Context(), c.Param("id"))
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
	}
}

// HandleUpdateDomain changes the fields given (PATCH and PUT alike). The fields are applied in
// the store's transaction to the record they replace, so concurrent PATCHes of different
// fields all survive.
func HandleUpdateDomain(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req domainRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		d, err := s.ModifyDomain(c.Request.Context(), c.Param("id"), func(d *Domain) error {
			req.apply(d)
			return nil
		})
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
	}
}

// HandleDeleteDomain deletes a domain with its users and their keys: 202.
func HandleDeleteDomain(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		// Deleting a domain deletes its users and their keys: the caller must be able to
		// delete each of them (grant.go), or a key scoped to domains alone could remove keys
		// stronger than itself, the bootstrap key among them.
		caller := CallerFrom(c.Request.Context())
		check := func(u *User, keys []*APIKey) error { return caller.CheckUserChange(u, nil, keys) }
		if err := s.DeleteDomain(c.Request.Context(), c.Param("id"), check); err != nil {
			WriteError(c, err)
			return
		}
		c.Status(http.StatusAccepted)
	}
}

type userRequest struct {
	AuthorityID *string   `json:"authority_id"`
	Name        *string   `json:"name"`
	Email       *string   `json:"email"`
	SysAdmin    *bool     `json:"sys_admin"`
	Support     *bool     `json:"support"`
	Groups      *[]string `json:"groups"`
}

func (r userRequest) apply(u *User) {
	setIf(&u.AuthorityID, r.AuthorityID)
	setIf(&u.Name, r.Name)
	setIf(&u.Email, r.Email)
	setIf(&u.SysAdmin, r.SysAdmin)
	setIf(&u.Support, r.Support)
	setIf(&u.Groups, r.Groups)
}

// HandleListUsers lists users, of one domain with ?authority_id=. A caller below admin level
// sees only its own domain's users: no authority_id means its own, and another domain's is a
// 403. Admins list any domain, or all of them (docs/http-api.md#who-may-call-it).
func HandleListUsers(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		authority := c.Query("authority_id")
		if caller := CallerFrom(c.Request.Context()); !caller.IsAdmin() {
			own := caller.domainID()
			if authority != "" && authority != own {
				WriteError(c, Errorf(EFORBIDDEN, "a caller below admin level may list only its own domain's users"))
				return
			}
			if own == "" { // no caller: there is no own domain to list
				WriteError(c, Errorf(EUNAUTHORIZED, "missing credentials"))
				return
			}
			authority = own
		}
		list, err := s.ListUsers(c.Request.Context(), authority)
		if err != nil {
			WriteError(c, err)
			return
		}
		c.Header("X-Total-Count", strconv.Itoa(len(list)))
		c.JSON(http.StatusOK, nonNil(list))
	}
}

// HandleCreateUser creates a user in the domain authority_id: 201 with the record. The user's
// level (sys_admin, support) may not be above the caller's effective level (grant.go).
func HandleCreateUser(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req userRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		u := &User{}
		req.apply(u)
		if err := CallerFrom(c.Request.Context()).CheckUserChange(nil, u, nil); err != nil {
			WriteError(c, err)
			return
		}
		if err := s.CreateUser(c.Request.Context(), u); err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, u)
	}
}

// HandleCurrentUser shows the calling key's user.
func HandleCurrentUser() gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := CallerFrom(c.Request.Context())
		if caller == nil || caller.User == nil {
			WriteError(c, Errorf(EUNAUTHORIZED, "missing credentials"))
			return
		}
		c.JSON(http.StatusOK, caller.User)
	}
}

// HandleShowUser shows one user, or 404. To a caller below admin level a user of another
// domain is a 404 like a missing one, so that ids cannot be probed for existence
// (docs/http-api.md#who-may-call-it).
func HandleShowUser(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Param("id")
		u, err := s.GetUser(c.Request.Context(), id)
		if err != nil {
			WriteError(c, err)
			return
		}
		if caller := CallerFrom(c.Request.Context()); !caller.IsAdmin() && u.AuthorityID != caller.domainID() {
			WriteError(c, notFound("user", id))
			return
		}
		c.JSON(http.StatusOK, u)
	}
}

// HandleUpdateUser changes the fields given (PATCH and PUT alike). A user cannot move to another
// domain (Service.ModifyUser refuses it). A caller below admin level may change only its own
// user's name and email (docs/http-api.md#who-may-call-it, as PlaceOS applies the other fields
// for admins only): a change to sys_admin, support, groups or authority_id is a 403 naming
// them, and nothing is stored. A field sent with its stored value is not a change, so a client
// may PUT back the record it read. The comparison runs in the store's transaction, against the
// record the update replaces: a concurrent demotion cannot be undone by a write that read the
// user before.
//
// An admin may change a user only if the user's level, before and after, is at most the
// caller's effective level (grant.go): an admin key cannot demote, or raise above itself, a user
// above its level. A caller's change of its own name and email only is self-service and
// allowed whatever its user's level.
func HandleUpdateUser(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req userRequest
		if err := BindWriteJSON(c, &req); err != nil {
			WriteError(c, err)
			return
		}
		caller := CallerFrom(c.Request.Context())
		u, err := s.ModifyUser(c.Request.Context(), c.Param("id"), func(u *User) error {
			if !caller.IsAdmin() {
				if caller == nil || caller.User == nil || caller.User.ID != u.ID {
					return Errorf(EFORBIDDEN, "only an admin may change another user")
				}
				if fields := req.adminFieldsChanged(u); len(fields) > 0 {
					return Errorf(EFORBIDDEN, "only an admin may change %s", strings.Join(fields, ", "))
				}
			}
			selfService := caller != nil && caller.User != nil && caller.User.ID == u.ID && len(req.adminFieldsChanged(u)) == 0
			before := *u
			// A changed authority_id is applied too: the store refuses it (422), inside the
			// transaction, the one place that rule lives.
			req.apply(u)
			if !selfService {
				return caller.CheckUserChange(&before, u, nil)
			}
			return nil
		})
		if err != nil {
			WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, u)
	}
}

// adminFieldsChanged names the fields only an admin may change that r would change in u.
// Groups compare as sets: their order and repetitions grant nothing.
func (r userRequest) adminFieldsChanged(u *User) []string {
	var fields []string
	if r.SysAdmin != nil && *r.SysAdmin != u.SysAdmin {
		fields = append(fields, "sys_admin")
	}
	if r.Support != nil && *r.Support != u.Support {
		fields = append(fields, "support")
	}
	if r.Groups != nil && !sameSet(*r.Groups, u.Groups) {
		fields = append(fields, "groups")
	}
	if r.AuthorityID != nil && *r.AuthorityID != u.AuthorityID {
		fields = append(fields, "authority_id")
	}
	return fields
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// domainID is the caller's domain: its key's (the policy has checked it is the request
// host's), or "" without a key.
func (c *Caller) domainID() string {
	if c == nil || c.Key == nil {
		return ""
	}
	return c.Key.AuthorityID
}

// HandleDeleteUser deletes a user and its keys: 202. The user's level must be at most the
// caller's effective level, and the caller must be able to delete each of its keys (the
// minting cap): deleting a user deletes its keys. The check runs in the store's transaction.
func HandleDeleteUser(s Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := CallerFrom(c.Request.Context())
		check := func(u *User, keys []*APIKey) error { return caller.CheckUserChange(u, nil, keys) }
		if err := s.DeleteUser(c.Request.Context(), c.Param("id"), check); err != nil {
			WriteError(c, err)
			return
		}
		c.Status(http.StatusAccepted)
	}
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
