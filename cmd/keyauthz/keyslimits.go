package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// keyLimitFlags declares --allowed-cidrs and --rate-limit, which set a key's limits
// (docs/limits.md). Their values are checked by the server, the one statement of the rules;
// here only their shape is read.
func keyLimitFlags(fs *flag.FlagSet, create bool) func(c *cli, body map[string]any) error {
	none := "\"none\" removes it"
	if create {
		none = "none by default"
	}
	cidrs := fs.String("allowed-cidrs", "", "the only `networks` the key may be used from, comma-separated CIDRs or addresses, e.g. 192.0.2.0/24,2001:db8::/32; "+none)
	limit := fs.String("rate-limit", "", "`rate,burst`: requests per second (on each node) and how many at once, e.g. 5,10; "+none)
	return func(c *cli, body map[string]any) error {
		if c.given("allowed-cidrs") {
			body["allowed_cidrs"] = parseCIDRFlag(*cidrs) // nil: JSON null, no allow-list
		}
		if c.given("rate-limit") {
			rl, err := parseRateLimit(*limit)
			if err != nil {
				return usageErrorf(c.name, "--rate-limit: %v", err)
			}
			body["rate_limit"] = rl // nil: JSON null, no rate limit
		}
		return nil
	}
}

// parseCIDRFlag splits a comma-separated list; "none" or "" is no list (nil).
func parseCIDRFlag(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// parseRateLimit reads "rate,burst" (a number and an integer); "none" is nil.
func parseRateLimit(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return nil, nil
	}
	r, b, ok := strings.Cut(s, ",")
	rate, err1 := strconv.ParseFloat(strings.TrimSpace(r), 64)
	burst, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q: want rate,burst (requests per second, then an integer), e.g. 5,10, or none", s)
	}
	return map[string]any{"rate": rate, "burst": burst}, nil
}

// rateLimitCol shows a key's rate limit as "5/s, burst 10" ("" when it has none).
func rateLimitCol(header string) column {
	return column{header: header, omitEmpty: true, value: func(obj map[string]any) string {
		rl, _ := obj["rate_limit"].(map[string]any)
		if rl == nil {
			return ""
		}
		return clean(fmt.Sprintf("%v/s, burst %v", rl["rate"], rl["burst"]))
	}}
}
