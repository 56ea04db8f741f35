package server

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The audit log's listing (docs/http-api.md#audit-log, docs/audit.md): GET
// /api/engine/v2/audit, behind the route table's `audit` scope and admin gate. The log is
// written by the store, in each write's transaction; this handler only reads it.

// auditActions are the actions a record can have, for ?action=.
var auditActions = []string{keys.AuditCreate, keys.AuditUpdate, keys.AuditDelete, keys.AuditRotate, keys.AuditImport}

// auditListParams are the listing's own query parameters, carried into Link.
var auditListParams = []string{"target", "actor", "action", "since", "until"}

// handleListAudit lists audit records, newest first: ?target= (a record id, also found in
// the cascade of a delete), ?actor= (a key id or user id), ?action=, ?since= and ?until= (Unix
// seconds or RFC 3339; since inclusive, until exclusive), ?limit= (default 100) and ?offset=,
// with the paging headers of the other listings.
func handleListAudit(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		f, err := auditFilter(c)
		if err != nil {
			writeError(c, err)
			return
		}
		list := []*keys.AuditRecord{}
		total := 0
		if f.Limit > 0 {
			list, total, err = s.ListAudit(c.Request.Context(), f)
		} else {
			count := f
			count.Limit = 1
			_, total, err = s.ListAudit(c.Request.Context(), count)
		}
		if err != nil {
			writeError(c, err)
			return
		}
		setPageHeaders(c, "audit", f.Offset, len(list), total, f.Limit, auditListParams...)
		c.JSON(http.StatusOK, list)
	}
}

// auditFilter reads the listing's query; a malformed value is EINVALID (400) naming it.
func auditFilter(c *gin.Context) (keys.AuditFilter, error) {
	limit, err := queryInt(c, "limit", 100)
	if err != nil {
		return keys.AuditFilter{}, err
	}
	offset, err := queryInt(c, "offset", 0)
	if err != nil {
		return keys.AuditFilter{}, err
	}
	f := keys.AuditFilter{
		Target: c.Query("target"), Actor: c.Query("actor"), Action: c.Query("action"),
		Limit: min(limit, maxListLimit), Offset: offset,
	}
	if f.Action != "" && !slices.Contains(auditActions, f.Action) {
		// The value is not echoed: a URL parameter may hold anything, a key included.
		return f, keys.Errorf(keys.EINVALID, "query parameter action must be one of %v", auditActions)
	}
	if f.Since, err = queryTime(c, "since"); err != nil {
		return f, err
	}
	if f.Until, err = queryTime(c, "until"); err != nil {
		return f, err
	}
	return f, nil
}

// queryTime reads a time parameter as Unix seconds: an integer, or an RFC 3339 time. Absent
// or empty is 0 (no bound).
func queryTime(c *gin.Context, name string) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil && t.Unix() > 0 {
		return t.Unix(), nil
	}
	// The value is not echoed: a URL parameter may hold anything, a key included.
	return 0, keys.Errorf(keys.EINVALID, "query parameter %s must be Unix seconds or an RFC 3339 time", name)
}
