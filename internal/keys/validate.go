package keys

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxNameLength is the longest key, user or domain name accepted, in characters (runes).
const MaxNameLength = 255

// Limits on a key's scopes. The forward-auth endpoints return a key's scopes in one
// X-Auth-Scopes header (joined by ","), and nginx reads the auth subrequest's response headers
// into one buffer of proxy_buffer_size, 4 KiB by default on common platforms: a larger header
// block fails the request (502). 64 scopes of up to 64 characters are far beyond what any
// real key needs; but 64 × 64 plus 63 commas is 4,159 bytes on its own, so the scopes joined
// are also capped at MaxScopesLength, which leaves about 1 KiB of the 4 KiB for the status
// line and the other headers (ids, permissions, Content-Type, Date).
const (
	MaxScopes       = 64   // scopes per key
	MaxScopeLength  = 64   // bytes per scope (a valid scope is ASCII: one byte per character)
	MaxScopesLength = 3072 // bytes of the scopes joined by ","
)

// Validation reasons, worded as PlaceOS (Crystal ActiveModel) words them.
const (
	ReasonRequired = "is required"
	ReasonTaken    = "has already been taken"
	ReasonInvalid  = "is invalid"
	ReasonMissing  = "does not exist"
	ReasonFixed    = "cannot be changed"
	ReasonTooLong  = "is too long (maximum is 255 characters)"
	ReasonFuture   = "must be in the future"
)

// NormalizeScope checks one scope against the grammar `resource` | `resource.read` |
// `resource.write`, with resource matching [a-z0-9_|-]+ and the suffix in any case, and returns
// it with the suffix lower-cased. A malformed scope (three parts, an unknown suffix, an empty or
// invalid resource) is an EINVALID error that names it.
func NormalizeScope(s string) (string, error) {
	resource, access, hasAccess := strings.Cut(s, ".")
	if hasAccess && strings.Contains(access, ".") {
		return "", Errorf(EINVALID, "invalid scope %q: a scope is resource or resource.read or resource.write", s)
	}
	if resource == "" {
		return "", Errorf(EINVALID, "invalid scope %q: empty resource", s)
	}
	for i := range len(resource) {
		c := resource[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '|' && c != '-' {
			return "", Errorf(EINVALID, "invalid scope %q: resource must match [a-z0-9_|-]+", s)
		}
	}
	if !hasAccess {
		return s, nil
	}
	switch a := strings.ToLower(access); a {
	case "read", "write":
		return resource + "." + a, nil
	default:
		return "", Errorf(EINVALID, "invalid scope %q: unknown access %q (want read or write)", s, access)
	}
}

// CheckScopeLimits appends a failure on field "scopes" for each limit scopes break (MaxScopes,
// MaxScopeLength, MaxScopesLength). It runs before the grammar so that a huge list is refused
// whole, without a message per entry.
func CheckScopeLimits(scopes []string, failures []Failure) []Failure {
	if len(scopes) > MaxScopes {
		failures = append(failures, Failure{"scopes", fmt.Sprintf("has too many entries (maximum is %d)", MaxScopes)})
	}
	total, tooLong := 0, false
	for i, s := range scopes {
		if i > 0 {
			total++ // the ","
		}
		total += len(s)
		tooLong = tooLong || len(s) > MaxScopeLength
	}
	if tooLong {
		failures = append(failures, Failure{"scopes", fmt.Sprintf("has an entry that is too long (maximum is %d characters)", MaxScopeLength)})
	}
	if total > MaxScopesLength {
		failures = append(failures, Failure{"scopes", fmt.Sprintf("is too long in all (maximum is %d characters, joined by commas)", MaxScopesLength)})
	}
	return failures
}

// NormalizeScopes applies NormalizeScope to each scope, returning a new slice (never nil: an
// empty list is allowed, as PlaceOS allows it) or the first EINVALID error.
func NormalizeScopes(scopes []string) ([]string, error) {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		n, err := NormalizeScope(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// NormalizeHost reduces a domain as PlaceOS does: a URL ("https://Example.com:8443/x") or a
// host with a port or path ("example.com:8080/x") becomes the bare, lower-case host
// ("example.com"); a trailing dot is dropped and IPv6 brackets removed. ok is false when no
// valid host remains: a host is an IP address, or dot-separated labels of [a-z0-9_-] of at
// most 63 characters, 253 in all (internationalised names must be given in punycode).
func NormalizeHost(s string) (host string, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false
	}
	// A bare IPv6 address ("::1", as a Host header's host reads once its brackets and port are
	// gone) would be read by url.Parse as a host and a port; take it as it is.
	if bare := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"); strings.Count(bare, ":") >= 2 {
		if ip := net.ParseIP(bare); ip != nil {
			return ip.String(), true
		}
	}
	if !strings.Contains(s, "://") {
		s = "//" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	host = strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	if net.ParseIP(host) != nil {
		return host, true
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := range len(label) {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return "", false
			}
		}
	}
	return host, true
}

// CheckName trims name and appends a failure for field when it is empty, not UTF-8 or longer
// than MaxNameLength runes.
func CheckName(field, name string, failures []Failure) (string, []Failure) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		failures = append(failures, Failure{field, ReasonRequired})
	case !utf8.ValidString(name):
		failures = append(failures, Failure{field, ReasonInvalid})
	case utf8.RuneCountInString(name) > MaxNameLength:
		failures = append(failures, Failure{field, ReasonTooLong})
	}
	return name, failures
}

// NormalizeDomain trims and normalises d in place and returns its field failures (uniqueness
// of the host is the store's to check).
func NormalizeDomain(d *Domain) []Failure {
	var failures []Failure
	d.Name, failures = CheckName("name", d.Name, failures)
	d.Description = strings.TrimSpace(d.Description)
	switch host, ok := NormalizeHost(d.Domain); {
	case strings.TrimSpace(d.Domain) == "":
		failures = append(failures, Failure{"domain", ReasonRequired})
	case !ok:
		failures = append(failures, Failure{"domain", ReasonInvalid})
	default:
		d.Domain = host
	}
	return failures
}

// NormalizeUser trims u in place and returns its field failures (the existence of its
// authority is the store's to check).
func NormalizeUser(u *User) []Failure {
	var failures []Failure
	u.Name, failures = CheckName("name", u.Name, failures)
	u.Email = strings.TrimSpace(u.Email)
	if at := strings.IndexByte(u.Email, '@'); u.Email == "" {
		failures = append(failures, Failure{"email", ReasonRequired})
	} else if at <= 0 || at == len(u.Email)-1 || len(u.Email) > 320 {
		failures = append(failures, Failure{"email", ReasonInvalid})
	}
	if u.Groups == nil {
		u.Groups = []string{}
	}
	return failures
}

// NormalizeUserUpdate normalises rec, the user that is to replace old, and returns its field
// failures: NormalizeUser's, and authority_id "cannot be changed" when rec's domain is not
// old's. A user cannot move to another domain, because its keys belong to its domain: this is
// the one statement of that rule, which every backend's ModifyUser applies.
func NormalizeUserUpdate(old, rec *User) []Failure {
	failures := NormalizeUser(rec)
	if rec.AuthorityID != old.AuthorityID {
		failures = append(failures, Failure{"authority_id", ReasonFixed})
	}
	return failures
}

// CheckExpiry appends a failure unless expiresAt is nil or after now.
func CheckExpiry(expiresAt *int64, now time.Time, failures []Failure) []Failure {
	if expiresAt != nil && *expiresAt <= now.Unix() {
		failures = append(failures, Failure{"expires_at", ReasonFuture})
	}
	return failures
}

// CheckPermissions appends a failure unless p is valid and not above the user's level.
func CheckPermissions(p Permission, user *User, failures []Failure) []Failure {
	switch {
	case !p.Valid():
		failures = append(failures, Failure{"permissions", "is invalid (want user, support, admin or admin_support)"})
	case user != nil && p.Rank() > user.Level().Rank():
		failures = append(failures, Failure{"permissions", "exceeds the user's own level (" + string(user.Level()) + ")"})
	}
	return failures
}
