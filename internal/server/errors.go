package server

import (
	"errors"
	"log/slog"
	"mime"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// The HTTP side of the domain's errors: the one translator from keys' error codes to statuses
// and JSON bodies (docs/http-api.md#errors), and the binding of request bodies.

// maxBodyBytes is the largest request body the API reads; a larger one is a 413.
const maxBodyBytes = 1 << 20

// errNotJSON is the 415 of an admin-API write whose body is not declared JSON
// (docs/http-api.md#request-bodies).
var errNotJSON = &keys.Error{Code: keys.EUNSUPPORTED, Message: "Content-Type must be application/json"}

// errorStatus maps an error to its HTTP status by its code (keys.ErrorCode): the one
// translator of the HTTP surface. A body over maxBodyBytes is a 413.
func errorStatus(err error) int {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	switch keys.ErrorCode(err) {
	case keys.ECONFLICT:
		return http.StatusConflict
	case keys.EFORBIDDEN:
		return http.StatusForbidden
	case keys.EINVALID:
		return http.StatusBadRequest
	case keys.ENOTFOUND:
		return http.StatusNotFound
	case keys.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case keys.EUNPROCESSABLE:
		return http.StatusUnprocessableEntity
	case keys.EUNSUPPORTED:
		return http.StatusUnsupportedMediaType
	case keys.EINSUFFICIENT:
		return http.StatusInsufficientStorage
	case keys.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes err as a JSON error body and aborts the request: {"error": message} (and
// "failures" for a validation error). Internal errors are logged with their cause and shown to
// the client only as "internal error".
func writeError(c *gin.Context, err error) {
	status := errorStatus(err)
	switch {
	case status == http.StatusRequestEntityTooLarge:
		c.AbortWithStatusJSON(status, gin.H{"error": "request body too large (limit 1 MiB)"})
	case status == http.StatusInternalServerError:
		logger, ok := c.Value(ctxLogger).(*slog.Logger)
		if !ok {
			logger = slog.Default() // a handler run outside the server (a test)
		}
		logger.ErrorContext(c.Request.Context(), "internal error", "method", c.Request.Method, "path", RedactPath(c.Request.URL.Path), "err", err)
		c.AbortWithStatusJSON(status, gin.H{"error": "internal error"})
	case len(keys.ErrorFailures(err)) > 0:
		c.AbortWithStatusJSON(status, gin.H{"error": keys.ErrorMessage(err), "failures": keys.ErrorFailures(err)})
	default:
		c.AbortWithStatusJSON(status, gin.H{"error": keys.ErrorMessage(err)})
	}
}

// bindJSON decodes the request body into v, limited to maxBodyBytes. A body that is too large
// is a 413 error; malformed JSON or a wrong type is EINVALID (400) naming the problem.
func bindJSON(c *gin.Context, v any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBodyBytes)
	if err := c.ShouldBindJSON(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return keys.Errorf(keys.EINVALID, "malformed JSON body: %v", err)
	}
	return nil
}

// bindWriteJSON is bindJSON for the admin API's writes (POST, PUT, PATCH): it first requires
// the body to be declared JSON (requireJSON), then decodes it.
func bindWriteJSON(c *gin.Context, v any) error {
	if err := requireJSON(c.Request); err != nil {
		return err
	}
	return bindJSON(c, v)
}

// requireJSON returns errNotJSON (415) unless r carries exactly one Content-Type whose media
// type is application/json; parameters such as charset are allowed. This closes cross-site
// request forgery with an ambient key (cookie, URL parameter): a browser sends text/plain,
// form and multipart bodies to another site without asking, but application/json only after a
// CORS preflight that keyauthz never grants. Gin's JSON binding ignores the header, so without
// this check a text/plain body holding JSON would be stored.
func requireJSON(r *http.Request) error {
	values := r.Header.Values("Content-Type")
	if len(values) != 1 {
		return errNotJSON
	}
	mediaType, _, err := mime.ParseMediaType(values[0])
	if err != nil || mediaType != "application/json" {
		return errNotJSON
	}
	return nil
}
