package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The admin API's user handlers (docs/http-api.md#users), makers taking keys.Service.

type userRequest struct {
	AuthorityID *string   `json:"authority_id"`
	Name        *string   `json:"name"`
	Email       *string   `json:"email"`
	SysAdmin    *bool     `json:"sys_admin"`
	Support     *bool     `json:"support"`
	Groups      *[]string `json:"groups"`
}

func (r userRequest) apply(u *keys.User) {
	setIf(&u.AuthorityID, r.AuthorityID)
	setIf(&u.Name, r.Name)
	setIf(&u.Email, r.Email)
	setIf(&u.SysAdmin, r.SysAdmin)
	setIf(&u.Support, r.Support)
	setIf(&u.Groups, r.Groups)
}

// handleListUsers lists users, of one domain with ?authority_id=. A caller below admin level
// sees only its own domain's users: no authority_id means its own, and another domain's is a
// 403. Admins list any domain, or all of them (docs/http-api.md#who-may-call-it).
func handleListUsers(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		authority := c.Query("authority_id")
		if caller := keys.CallerFrom(c.Request.Context()); !caller.IsAdmin() {
			own := caller.DomainID()
			if authority != "" && authority != own {
				writeError(c, keys.Errorf(keys.EFORBIDDEN, "a caller below admin level may list only its own domain's users"))
				return
			}
			if own == "" { // no caller: there is no own domain to list
				writeError(c, keys.Errorf(keys.EUNAUTHORIZED, "missing credentials"))
				return
			}
			authority = own
		}
		list, err := s.ListUsers(c.Request.Context(), authority)
		if err != nil {
			writeError(c, err)
			return
		}
		c.Header("X-Total-Count", strconv.Itoa(len(list)))
		c.JSON(http.StatusOK, nonNil(list))
	}
}

// handleCreateUser creates a user in the domain authority_id: 201 with the record. The user's
// level (sys_admin, support) may not be above the caller's effective level (keys/grant.go).
func handleCreateUser(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req userRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		u := &keys.User{}
		req.apply(u)
		if err := keys.CallerFrom(c.Request.Context()).CheckUserChange(nil, u, nil); err != nil {
			writeError(c, err)
			return
		}
		if err := s.CreateUser(c.Request.Context(), u); err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusCreated, u)
	}
}

// handleCurrentUser shows the calling key's user.
func handleCurrentUser() gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := keys.CallerFrom(c.Request.Context())
		if caller == nil || caller.User == nil {
			writeError(c, keys.Errorf(keys.EUNAUTHORIZED, "missing credentials"))
			return
		}
		c.JSON(http.StatusOK, caller.User)
	}
}

// handleShowUser shows one user, or 404. To a caller below admin level a user of another
// domain is a 404 like a missing one, so that ids cannot be probed for existence
// (docs/http-api.md#who-may-call-it).
func handleShowUser(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Param("id")
		u, err := s.GetUser(c.Request.Context(), id)
		if err != nil {
			writeError(c, err)
			return
		}
		if caller := keys.CallerFrom(c.Request.Context()); !caller.IsAdmin() && u.AuthorityID != caller.DomainID() {
			writeError(c, keys.NotFound("user", id))
			return
		}
		c.JSON(http.StatusOK, u)
	}
}

// handleUpdateUser changes the fields given (PATCH and PUT alike). A user cannot move to another
// domain (Service.ModifyUser refuses it). A caller below admin level may change only its own
// user's name and email (docs/http-api.md#who-may-call-it, as PlaceOS applies the other fields
// for admins only): a change to sys_admin, support, groups or authority_id is a 403 naming
// them, and nothing is stored. A field sent with its stored value is not a change, so a client
// may PUT back the record it read. The comparison runs in the store's transaction, against the
// record the update replaces: a concurrent demotion cannot be undone by a write that read the
// user before.
//
// An admin may change a user only if the user's level, before and after, is at most the
// caller's effective level (keys/grant.go): an admin key cannot demote, or raise above itself, a user
// above its level. A caller's change of its own name and email only is self-service and
// allowed whatever its user's level.
func handleUpdateUser(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req userRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		caller := keys.CallerFrom(c.Request.Context())
		u, err := s.ModifyUser(c.Request.Context(), c.Param("id"), func(u *keys.User) error {
			if !caller.IsAdmin() {
				if caller == nil || caller.User == nil || caller.User.ID != u.ID {
					return keys.Errorf(keys.EFORBIDDEN, "only an admin may change another user")
				}
				if fields := req.adminFieldsChanged(u); len(fields) > 0 {
					return keys.Errorf(keys.EFORBIDDEN, "only an admin may change %s", strings.Join(fields, ", "))
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
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, u)
	}
}

// adminFieldsChanged names the fields only an admin may change that r would change in u.
// Groups compare as sets: their order and repetitions grant nothing.
func (r userRequest) adminFieldsChanged(u *keys.User) []string {
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

// handleDeleteUser deletes a user and its keys: 202. The user's level must be at most the
// caller's effective level, and the caller must be able to delete each of its keys (the
// minting cap): deleting a user deletes its keys. The check runs in the store's transaction.
func handleDeleteUser(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		caller := keys.CallerFrom(c.Request.Context())
		check := func(u *keys.User, ks []*keys.APIKey) error { return caller.CheckUserChange(u, nil, ks) }
		if err := s.DeleteUser(c.Request.Context(), c.Param("id"), check); err != nil {
			writeError(c, err)
			return
		}
		c.Status(http.StatusAccepted)
	}
}
