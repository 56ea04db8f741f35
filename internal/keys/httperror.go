package keys

import (
	"context"
	"errors"
	"log/slog"
	"mime"
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
	case EFORBIDDEN:
		return http.StatusForbidden
	case EINVALID:
		return http.StatusBadRequest
	case ENOTFOUND:
		return http.StatusNotFound
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EUNPROCESSABLE:
		return http.StatusUnprocessableEntity
	case EUNSUPPORTED:
		return http.StatusUnsupportedMediaType
	case EINSUFFICIENT:
		return http.StatusInsufficientStorage
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

// BindWriteJSON is BindJSON for the admin API's writes (POST, PUT, PATCH): it first requires
// the body to be declared JSON (RequireJSON), then decodes it.
func BindWriteJSON(c *gin.Context, v any) error {
	if err := RequireJSON(c.Request); err != nil {
		return err
	}
	return BindJSON(c, v)
}

// RequireJSON returns ErrNotJSON (415) unless r carries exactly one Content-Type whose media
// type is application/json; parameters such as charset are allowed. This closes cross-site
// request forgery with an ambient key (cookie, URL parameter): a browser sends text/plain,
// form and multipart bodies to another site without asking, but application/json only after a
// CORS preflight that keyauthz never grants. Gin's JSON binding ignores the header, so without
// this check a text/plain body holding JSON would be stored.
func RequireJSON(r *http.Request) error {
	values := r.Header.Values("Content-Type")
	if len(values) != 1 {
		return ErrNotJSON
	}
	mediaType, _, err := mime.ParseMediaType(values[0])
	if err != nil || mediaType != "application/json" {
		return ErrNotJSON
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
