package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/keyauthz/keyauthz/internal/keys"
)

// TestErrorStatus: the one translator maps every error code to its status (docs/http-api.md#errors),
// through wrapping too; an error without a code is a 500 and a body over the limit a 413.
func TestErrorStatus(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{keys.Errorf(keys.ECONFLICT, "x"), http.StatusConflict},
		{keys.Errorf(keys.EFORBIDDEN, "x"), http.StatusForbidden},
		{keys.Errorf(keys.EINVALID, "x"), http.StatusBadRequest},
		{keys.Errorf(keys.ENOTFOUND, "x"), http.StatusNotFound},
		{keys.ErrUnknownKey, http.StatusUnauthorized},
		{keys.ValidationFailed([]keys.Failure{{Field: "name", Reason: keys.ReasonRequired}}), http.StatusUnprocessableEntity},
		{errNotJSON, http.StatusUnsupportedMediaType},
		{keys.Errorf(keys.EINSUFFICIENT, "insufficient storage: x"), http.StatusInsufficientStorage},
		{fmt.Errorf("wrapped: %w", keys.Errorf(keys.EINSUFFICIENT, "x")), http.StatusInsufficientStorage},
		{fmt.Errorf("%w: dial tcp: refused", keys.Errorf(keys.EUNAVAILABLE, "store unavailable")), http.StatusServiceUnavailable},
		{keys.Errorf(keys.EINTERNAL, "x"), http.StatusInternalServerError},
		{errors.New("disk on fire"), http.StatusInternalServerError},
		{&http.MaxBytesError{Limit: maxBodyBytes}, http.StatusRequestEntityTooLarge},
	} {
		if got := errorStatus(tt.err); got != tt.want {
			t.Errorf("errorStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}
