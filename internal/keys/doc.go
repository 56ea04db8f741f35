// Package keys is the keyauthz domain: domains (PlaceOS "authorities"), their users and the API
// keys those users own; the store interface every backend implements (Service); key material
// (generation, parsing, verification); validation; error codes; the admin-API caller and the
// minting cap; and the batching of last_used_at writes (docs/architecture.md#packages,
// docs/keys.md).
//
// Errors returned by this package and by its backends are *Error values carrying one of the
// codes of errors.go (see ErrorCode); any other error is an internal one. keys speaks neither
// HTTP nor Badger: the Badger store is package badgerstore, the admin API's handlers and the one
// translator from error codes to HTTP statuses are in package server, and the store
// conformance suite is keys/storetest.
package keys
