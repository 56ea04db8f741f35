package keys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// Per-key limits (docs/limits.md): the networks a key may be used from (AllowedCIDRs, judged
// by the policy) and its rate limit (RateLimit, a token bucket kept by each node). The rules
// here are the one statement of what a stored key may hold; both backends apply them through
// PrepareKey and KeyPatch.Apply.

// Bounds of the limits. 64 networks is far beyond what a key used from a few sites needs, and
// keeps the policy's check (one net.cidr_contains per network) cheap. The rate and burst bounds
// only keep the numbers meaningful: a key that needs more than a million requests a second on
// one node needs no limit.
const (
	MaxAllowedCIDRs = 64
	MaxRate         = 1e6 // requests per second
	MaxBurst        = 1_000_000
)

// Fields of the limits, as the API names them in failures.
const (
	FieldAllowedCIDRs = "allowed_cidrs"
	FieldRateLimit    = "rate_limit"
)

// maxEchoed is the longest invalid entry quoted back in a failure: a client must not be able to
// have megabytes of its own text echoed.
const maxEchoed = 64

// NormalizeCIDRs checks and normalises an allow-list and appends its failures (on
// "allowed_cidrs"): at most MaxAllowedCIDRs entries, each an IPv4 or IPv6 network in CIDR
// notation ("192.0.2.0/24", "2001:db8::/32") or a single address (taken as /32 or /128). Each
// network is stored in its canonical form: host bits cleared ("10.1.2.3/8" is "10.0.0.0/8"),
// IPv6 compressed and lower-case, an IPv4-mapped IPv6 network ("::ffff:192.0.2.0/120") as the
// IPv4 network it is; duplicates (after normalising) are dropped, the order otherwise kept. A
// zone ("fe80::1%eth0") is refused: client addresses carry none. The result is never nil (an
// empty list: no allow-list).
func NormalizeCIDRs(list []string, failures []Failure) ([]string, []Failure) {
	if len(list) > MaxAllowedCIDRs {
		return list, append(failures, Failure{FieldAllowedCIDRs, fmt.Sprintf("has too many entries (maximum is %d)", MaxAllowedCIDRs)})
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		p, ok := parseNetwork(strings.TrimSpace(s))
		if !ok {
			return list, append(failures, Failure{FieldAllowedCIDRs, fmt.Sprintf(
				"has an invalid entry %q (want a network such as 192.0.2.0/24 or 2001:db8::/32, or one address)", echo(s))})
		}
		if n := p.String(); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, failures
}

// parseNetwork reads a CIDR or a single address into its canonical prefix.
func parseNetwork(s string) (netip.Prefix, bool) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// ParseClientIP reads a client address as a gateway or a service gives it: an IPv4 or IPv6
// address, without a port or zone; an IPv4-mapped IPv6 address is its IPv4 address. It returns
// the canonical text ("" and false for anything else), the form net.cidr_contains compares.
func ParseClientIP(s string) (string, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", false
	}
	// Every decision with a client address comes here: an address already canonical (as
	// gateways write them) is returned as given, without allocating its text again.
	var buf [64]byte
	if b := a.Unmap().AppendTo(buf[:0]); string(b) != s {
		return string(b), true
	}
	return s, true
}

// CheckRateLimit appends the failures of a rate limit (on "rate_limit"): rate must be a number
// above 0 and at most MaxRate, burst at least 1 and at most MaxBurst. A nil limit (none) passes.
func CheckRateLimit(r *RateLimit, failures []Failure) []Failure {
	if r == nil {
		return failures
	}
	if math.IsNaN(r.Rate) || r.Rate <= 0 || r.Rate > MaxRate {
		failures = append(failures, Failure{FieldRateLimit, fmt.Sprintf("rate must be above 0 and at most %g requests per second", float64(MaxRate))})
	}
	if r.Burst < 1 || r.Burst > MaxBurst {
		failures = append(failures, Failure{FieldRateLimit, fmt.Sprintf("burst must be from 1 to %d", MaxBurst)})
	}
	return failures
}

func echo(s string) string {
	if len(s) > maxEchoed {
		return strings.ToValidUTF8(s[:maxEchoed], "") + "…"
	}
	return s
}

// Nullable is an optional, nullable value of a partial update: Set false leaves the field
// alone; Set with a nil Value clears it (JSON null).
type Nullable[T any] struct {
	Set   bool
	Value *T
}

// UnmarshalJSON implements json.Unmarshaler: any value, null included, sets the field.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	n.Value = nil
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	n.Value = &v
	return nil
}

// Some is a Nullable set to v.
func Some[T any](v T) Nullable[T] { return Nullable[T]{Set: true, Value: &v} }

// prepareLimits normalises and checks the limits of rec, a key about to be stored, appending
// the failures.
func prepareLimits(rec *APIKey, failures []Failure) []Failure {
	rec.AllowedCIDRs, failures = NormalizeCIDRs(rec.AllowedCIDRs, failures)
	if rec.RateLimit != nil {
		r := *rec.RateLimit // never share the caller's
		rec.RateLimit = &r
	}
	return CheckRateLimit(rec.RateLimit, failures)
}

// applyLimits applies the limits the update sets to rec, the key as stored, and appends their
// failures; limits the update does not set are left as stored.
func (p *KeyPatch) applyLimits(rec *APIKey, failures []Failure) []Failure {
	if u := p.u.AllowedCIDRs; u.Set {
		var list []string
		if u.Value != nil {
			list = *u.Value
		}
		rec.AllowedCIDRs, failures = NormalizeCIDRs(list, failures)
	}
	if u := p.u.RateLimit; u.Set {
		rec.RateLimit = nil
		if u.Value != nil {
			r := *u.Value
			rec.RateLimit = &r
		}
		failures = CheckRateLimit(rec.RateLimit, failures)
	}
	return failures
}
