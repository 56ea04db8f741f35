package keys

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
)

// MaxBodyBytes is the largest request body the API reads; a larger one is a 413.
const MaxBodyBytes = 1 << 20

// ErrorStatus maps an error code to its HTTP status: the one translator of the HTTP surface.
func ErrorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	switch ErrorCode(err) {
	case ECONFLICT:
		return http.StatusConflict
	case EINVALID:
		return http.StatusBadRequest
	case ENOTFOUND:
		return http.StatusNotFound
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EUNPROCESSABLE:
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

// WriteError writes err as a JSON error body and aborts the request: {"error": message} (and
// "failures" for a validation error). Internal errors are logged with their cause and shown to
// the client only as "internal error".
func WriteError(c *gin.Context, err error) {
	status := ErrorStatus(err)
	switch {
	case status == http.StatusRequestEntityTooLarge:
		c.AbortWithStatusJSON(status, gin.H{"error": "request body too large (limit 1 MiB)"})
	case status == http.StatusInternalServerError:
		slog.ErrorContext(c.Request.Context(), "internal error", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
		c.AbortWithStatusJSON(status, gin.H{"error": "internal error"})
	case len(ErrorFailures(err)) > 0:
		c.AbortWithStatusJSON(status, gin.H{"error": ErrorMessage(err), "failures": ErrorFailures(err)})
	default:
		c.AbortWithStatusJSON(status, gin.H{"error": ErrorMessage(err)})
	}
}

// BindJSON decodes the request body into v, limited to MaxBodyBytes. A body that is too large
// is a 413 error; malformed JSON or a wrong type is EINVALID (400) naming the problem.
func BindJSON(c *gin.Context, v any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes)
	if err := c.ShouldBindJSON(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return Errorf(EINVALID, "malformed JSON body: %v", err)
	}
	return nil
}

// Caller is who a request to the admin API comes from: the authenticated key and its user, and
// the effective permission level the policy computed (the key's, capped at the user's).
type Caller struct {
	Key         *APIKey
	User        *User
	Permissions Permission
}

type callerKey struct{}

// ContextWithCaller returns ctx carrying c; the authorization middleware sets it.
func ContextWithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller stored in ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}
