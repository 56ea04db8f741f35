package server

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The admin API's domain handlers (docs/http-api.md#domains), makers taking keys.Service.

type domainRequest struct {
	Name        *string `json:"name"`
	Domain      *string `json:"domain"`
	Description *string `json:"description"`
}

func (r domainRequest) apply(d *keys.Domain) {
	setIf(&d.Name, r.Name)
	setIf(&d.Domain, r.Domain)
	setIf(&d.Description, r.Description)
}

// handleListDomains lists every domain.
func handleListDomains(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		list, err := s.ListDomains(c.Request.Context())
		if err != nil {
			writeError(c, err)
			return
		}
		c.Header("X-Total-Count", strconv.Itoa(len(list)))
		c.JSON(http.StatusOK, nonNil(list))
	}
}

// handleCreateDomain creates a domain: 201 with the record.
func handleCreateDomain(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req domainRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		d := &keys.Domain{}
		req.apply(d)
		if err := s.CreateDomain(c.Request.Context(), d); err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusCreated, d)
	}
}

// handleShowDomain shows one domain, or 404.
func handleShowDomain(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		d, err := s.GetDomain(c.Request.Context(), c.Param("id"))
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
	}
}

// handleUpdateDomain changes the fields given (PATCH and PUT alike). The fields are applied in
// the store's transaction to the record they replace, so concurrent PATCHes of different
// fields all survive.
func handleUpdateDomain(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req domainRequest
		if err := bindWriteJSON(c, &req); err != nil {
			writeError(c, err)
			return
		}
		d, err := s.ModifyDomain(c.Request.Context(), c.Param("id"), func(d *keys.Domain) error {
			req.apply(d)
			return nil
		})
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
	}
}

// handleDeleteDomain deletes a domain with its users and their keys: 202.
func handleDeleteDomain(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		// Deleting a domain deletes its users and their keys: the caller must be able to
		// delete each of them (keys/grant.go), or a key scoped to domains alone could remove keys
		// stronger than itself, the bootstrap key among them.
		caller := keys.CallerFrom(c.Request.Context())
		check := func(u *keys.User, ks []*keys.APIKey) error { return caller.CheckUserChange(u, nil, ks) }
		if err := s.DeleteDomain(c.Request.Context(), c.Param("id"), check); err != nil {
			writeError(c, err)
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
