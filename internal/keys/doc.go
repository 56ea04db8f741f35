// Package keys is the keyauthz domain: domains (PlaceOS "authorities"), their users and the API
// keys those users own, the generation and verification of key material, and the Badger store
// that keeps them.
//
// Errors returned by this package are *Error values carrying one of the codes ECONFLICT,
// EINTERNAL, EINVALID, ENOTFOUND, EUNAUTHORIZED or EUNPROCESSABLE (see ErrorCode); any other
// error is an internal one. Gin and Badger types never appear in the domain's signatures: the
// Badger adapter lives in badger.go, the HTTP adapter in handlers.go and routes.go.
package keys
