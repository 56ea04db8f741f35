package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyauthz/keyauthz/internal/keys"
	"github.com/keyauthz/keyauthz/internal/opa"
)

// metrics are the Prometheus series of docs/http-api.md#metrics: decisions by result and
// status, decision latency, the store's size, the active policy revision and the caches' hits
// and misses (all read at scrape time).
type metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	// refusals counts the forward-auth requests refused before any decision: a gateway that
	// left out a header it must set, or one still pointed at the retired /authz. They are
	// configuration faults, not clients' requests judged, so a dashboard shows them apart.
	refusals *prometheus.CounterVec
}

// Reasons of keyauthz_gateway_refusals_total.
const (
	refusedMissingHeader = "missing_header"
	refusedRetired       = "retired_endpoint"
)

// CacheStats returns a cache's lookups answered from memory and not.
type CacheStats func() (hits, misses uint64)

func newMetrics(reg *prometheus.Registry, store keys.Service, revision func() string, caches map[string]CacheStats) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyauthz_decisions_total",
			Help: "Authorization decisions, by result (allow or deny) and HTTP status.",
		}, []string{"result", "status"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyauthz_gateway_refusals_total",
			Help: "Forward-auth requests refused (403) before any decision, by endpoint and reason: missing_header (a header the gateway must set is missing, empty or doubled) or retired_endpoint (/authz).",
		}, []string{"endpoint", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keyauthz_decision_duration_seconds",
			Help:    "Time to decide one request: credential extraction, key verification and policy evaluation.",
			Buckets: []float64{5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1},
		}),
	}
	reg.MustRegister(m.decisions, m.latency, m.refusals)
	if revision != nil {
		reg.MustRegister(policyInfo{revision: revision})
	}
	if store != nil {
		for _, kind := range []string{"domains", "users", "keys"} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "keyauthz_store_objects",
				Help:        "Objects in the key store, by kind.",
				ConstLabels: prometheus.Labels{"kind": kind},
			}, storeCount(store, kind)))
		}
	}
	for name, stats := range caches {
		labels := prometheus.Labels{"cache": name}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyauthz_cache_hits_total", Help: "Lookups answered from a cache.", ConstLabels: labels},
				func() float64 { h, _ := stats(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keyauthz_cache_misses_total", Help: "Lookups a cache could not answer.", ConstLabels: labels},
				func() float64 { _, m := stats(); return float64(m) }),
		)
	}
	return m
}

func storeCount(store keys.Service, kind string) func() float64 {
	return func() float64 {
		d, u, k := store.Counts(context.Background())
		switch kind {
		case "domains":
			return float64(d)
		case "users":
			return float64(u)
		default:
			return float64(k)
		}
	}
}

func (m *metrics) observe(d opa.Decision, elapsed time.Duration) {
	result := "deny"
	if d.Allow {
		result = "allow"
	}
	m.decisions.WithLabelValues(result, strconv.Itoa(d.Status)).Inc()
	m.latency.Observe(elapsed.Seconds())
}

// policyInfoDesc is keyauthz_policy_info{revision="..."} 1: the revision of the policy in use,
// read at scrape time so that a hot reload shows at once.
var policyInfoDesc = prometheus.NewDesc("keyauthz_policy_info",
	"The policy in use: always 1, with its revision as a label.", []string{"revision"}, nil)

type policyInfo struct{ revision func() string }

func (p policyInfo) Describe(ch chan<- *prometheus.Desc) { ch <- policyInfoDesc }

func (p policyInfo) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, p.revision())
}
