package server

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/placeos"
)

// The PlaceOS import (docs/import.md, docs/http-api.md#import): an export of PlaceOS's
// authority, user and api_key rows, posted as it is, becomes domains, users and keys with
// their ids and hashes, all or nothing, in one store transaction with one audit record.

// Media types of an import's body. Neither is one a browser may send to another site without
// a CORS preflight (which keyauthz never grants), so an ambient key cannot be made to import.
const (
	mediaCSV       = "text/csv"
	mediaJSONLines = "application/x-ndjson"
	mediaJSONL     = "application/jsonl"
)

var errImportMedia = &keys.Error{Code: keys.EUNSUPPORTED,
	Message: "Content-Type must be text/csv (CSV) or application/x-ndjson (JSON lines)"}

// importResponse is an import's report; error is set when the import was refused for its
// conflicts (409), which the report lists.
type importResponse struct {
	Error string `json:"error,omitempty"`
	*keys.ImportResult
}

// handleImportPlaceOS imports a PlaceOS export: ?dry_run=true only reports. The body is CSV
// (text/csv) or JSON lines (application/x-ndjson), at most 1 MiB. Bad rows are a 422 with one
// failure per problem, field "line N"; conflicts with stored records a 409 with the report;
// otherwise 200 with the report. The caller must be able to mint every key of the export and
// create every user (the minting cap, keys/grant.go), and hold domains.write and users.write
// for an export with authority and user rows: the route's own scope is api_keys.
func handleImportPlaceOS(s keys.Service) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		format, err := importFormat(c.Request)
		if err != nil {
			writeError(c, err)
			return
		}
		dryRun, err := queryBool(c, "dry_run")
		if err != nil {
			writeError(c, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes))
		if err != nil {
			writeError(c, err)
			return
		}
		batch, err := placeos.Parse(bytes.NewReader(body), format)
		if pe := (*placeos.Error)(nil); errors.As(err, &pe) {
			writeError(c, keys.ValidationFailed(pe.Failures()))
			return
		}
		if err != nil {
			writeError(c, err)
			return
		}
		// The rows as the store will judge them (scopes normalised), so that the cap judges
		// what would be stored; the store prepares them again, which changes nothing.
		if err := keys.PrepareImport(batch, time.Now()); err != nil {
			writeError(c, err)
			return
		}
		if err := checkImportGrant(keys.CallerFrom(ctx), batch); err != nil {
			writeError(c, err)
			return
		}
		res, err := s.Import(ctx, batch, dryRun)
		if errors.Is(err, keys.ErrImportConflicts) && res != nil {
			c.JSON(errorStatus(err), importResponse{Error: keys.ErrorMessage(err), ImportResult: res})
			return
		}
		if err != nil {
			writeError(c, err)
			return
		}
		c.JSON(http.StatusOK, importResponse{ImportResult: res})
	}
}

// importFormat is the body's format from its one Content-Type.
func importFormat(r *http.Request) (placeos.Format, error) {
	values := r.Header.Values("Content-Type")
	if len(values) != 1 {
		return 0, errImportMedia
	}
	mediaType, _, err := mime.ParseMediaType(values[0])
	switch {
	case err != nil:
		return 0, errImportMedia
	case mediaType == mediaCSV:
		return placeos.CSV, nil
	case mediaType == mediaJSONLines || mediaType == mediaJSONL:
		return placeos.JSONLines, nil
	}
	return 0, errImportMedia
}

// checkImportGrant is the minting cap of an import: every key as the caller could create it
// (scopes, level, expiry), every user as the caller could create it, and domains.write and
// users.write held for rows of those tables. It judges every row, those the import would
// leave unchanged too: an import is one act, and what it may bring does not depend on what
// happens to be stored.
func checkImportGrant(caller *keys.Caller, b *keys.ImportBatch) error {
	var held []string
	if caller != nil && caller.Key != nil {
		held = caller.Key.Scopes
	}
	for _, need := range []struct {
		scope string
		rows  int
	}{{"domains.write", len(b.Domains)}, {"users.write", len(b.Users)}} {
		if need.rows > 0 && !keys.ScopesCover(held, need.scope) {
			rows := "rows that need"
			if need.rows == 1 {
				rows = "row that needs"
			}
			return keys.Errorf(keys.EFORBIDDEN, "cannot import %d %s scope %s: the calling key does not hold it", need.rows, rows, need.scope)
		}
	}
	for i := range b.Users {
		if err := caller.CheckUserChange(nil, &b.Users[i].User, nil); err != nil {
			return err
		}
	}
	for i := range b.Keys {
		k := &b.Keys[i].Key
		if err := caller.CheckMint(k); err != nil {
			return keys.Errorf(keys.EFORBIDDEN, "key %s (line %d): %s", k.ID, b.Keys[i].Line, keys.ErrorMessage(err))
		}
	}
	return nil
}

// queryBool reads an optional boolean query parameter: true, false, 1, 0 (absent or empty:
// false).
func queryBool(c *gin.Context, name string) (bool, error) {
	switch c.Query(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		// The value is not echoed: a URL parameter may hold anything, a key included.
		return false, keys.Errorf(keys.EINVALID, "query parameter %s must be true or false", name)
	}
}
