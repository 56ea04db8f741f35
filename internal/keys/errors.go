package keys

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error codes. The HTTP layer maps each to one status: ECONFLICT 409, EFORBIDDEN 403 (the
// caller may not do this, whatever the input: a field only an admin may change, a scope the
// caller does not hold), EINVALID 400 (malformed input, such as a bad scope), ENOTFOUND 404,
// EUNAUTHORIZED 401, EUNPROCESSABLE 422 (validation failed, with Failures), EUNSUPPORTED 415
// (a body that is not declared JSON), EINSUFFICIENT 507 (a write refused because the data
// folder's disk is too full to take it safely; see docs/operations.md#disk-space),
// EUNAVAILABLE 503 (the store cannot be reached, such as an etcd cluster without a quorum: try
// again), EINTERNAL 500 (clients see only "internal error").
const (
	ECONFLICT      = "conflict"
	EFORBIDDEN     = "forbidden"
	EINSUFFICIENT  = "insufficient_storage"
	EINTERNAL      = "internal"
	EINVALID       = "invalid"
	ENOTFOUND      = "not_found"
	EUNAUTHORIZED  = "unauthorized"
	EUNAVAILABLE   = "unavailable"
	EUNPROCESSABLE = "unprocessable"
	EUNSUPPORTED   = "unsupported"
)

// Error is an error a client may see: a code, a human-readable message, and for
// EUNPROCESSABLE the list of fields that failed validation.
type Error struct {
	Code     string
	Message  string
	Failures []Failure
}

// Failure is one failed validation: {"field": ..., "reason": ...}.
type Failure struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error implements the error interface: the message, followed by the failures if any.
func (e *Error) Error() string {
	if len(e.Failures) == 0 {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for i, f := range e.Failures {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field + " " + f.Reason)
	}
	return b.String()
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, "" for a nil err, and EINTERNAL for
// any other error.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the message of the *Error in err's chain, "" for a nil err, and
// "internal error" for any other error (whose text is for logs only).
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}

// ErrorFailures returns the validation failures of the *Error in err's chain, if any.
func ErrorFailures(err error) []Failure {
	var e *Error
	if errors.As(err, &e) {
		return e.Failures
	}
	return nil
}

// Authentication failures (docs/http-api.md#authentication-errors): both are EUNAUTHORIZED and
// compare with errors.Is.
var (
	// ErrUnknownKey is returned for a malformed key, an unknown id or a wrong secret, which
	// are deliberately indistinguishable.
	ErrUnknownKey = &Error{Code: EUNAUTHORIZED, Message: "unknown X-API-Key"}
	// ErrExpiredKey is returned for a valid key whose expires_at is not after now.
	ErrExpiredKey = &Error{Code: EUNAUTHORIZED, Message: "API key has expired"}
)

// ValidationFailed is the EUNPROCESSABLE error for a non-empty list of failures.
func ValidationFailed(failures []Failure) *Error {
	return &Error{Code: EUNPROCESSABLE, Message: "validation failed", Failures: failures}
}

// HasFailure reports whether fs has a failure of field.
func HasFailure(fs []Failure, field string) bool {
	return slices.ContainsFunc(fs, func(f Failure) bool { return f.Field == field })
}

// NotFound is the ENOTFOUND error for the record of the given kind ("domain", "user", "key")
// and id: `user "x" not found`.
func NotFound(kind, id string) *Error {
	return Errorf(ENOTFOUND, "%s %q not found", kind, id)
}
