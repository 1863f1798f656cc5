package broker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the broker server's Prometheus collectors.
type serverMetrics struct {
	requests *prometheus.CounterVec   // by route and code ("ok" for success)
	duration *prometheus.HistogramVec // by route
	paid     prometheus.Counter       // units paid out by redemptions
	nonces   prometheus.GaugeFunc
	// complaints counts accepted complaint requests (retries included)
	// by the verdict of their cross-check.
	complaints *prometheus.CounterVec
}

func newServerMetrics(reg prometheus.Registerer, nonceCount func() float64) (*serverMetrics, error) {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "broker", Name: "requests_total",
			Help: "Broker API requests handled, by route and result code (ok for success).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "floodgate", Subsystem: "broker", Name: "request_duration_seconds",
			Help:    "Time to handle a broker API request, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"route"}),
		paid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "broker", Name: "redeemed_units_total",
			Help: "Units paid to payees by channel redemptions, before fees.",
		}),
		nonces: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "floodgate", Subsystem: "broker", Name: "nonce_cache_entries",
			Help: "Request nonces remembered for replay protection.",
		}, nonceCount),
		complaints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "broker", Name: "complaints_total",
			Help: "Complaint requests accepted (retries included), by the verdict of the broker's cross-check.",
		}, []string{"verdict"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.paid, m.nonces, m.complaints} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// clientMetrics are the broker client's Prometheus collectors. Several
// clients may share one registry (a peer process talks to one broker per
// torrent), so registration reuses collectors already registered.
type clientMetrics struct {
	calls    *prometheus.CounterVec   // by op and outcome
	retries  *prometheus.CounterVec   // by op
	duration *prometheus.HistogramVec // by op, including retries
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "broker_client", Name: "calls_total",
			Help: "Broker API calls made, by operation and outcome (ok, an error code, or network).",
		}, []string{"op", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "broker_client", Name: "retries_total",
			Help: "Broker API attempts repeated after a network error or a 5xx response.",
		}, []string{"op"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "floodgate", Subsystem: "broker_client", Name: "call_duration_seconds",
			Help:    "Time for a broker API call, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}, []string{"op"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.calls, err = registerOrReuse(reg, m.calls); err != nil {
		return nil, err
	}
	if m.retries, err = registerOrReuse(reg, m.retries); err != nil {
		return nil, err
	}
	if m.duration, err = registerOrReuse(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
