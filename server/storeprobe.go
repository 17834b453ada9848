package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeUpDesc is tokensvc_store_up, what the store-unavailable alert
// watches: it answers whether or not requests come in.
var storeUpDesc = prometheus.NewDesc("tokensvc_store_up",
	"1 when the token store answered a ping at this scrape (within TOKENSVC_STORE_TIMEOUT), else 0.", nil, nil)

// storeProbe pings the store at each scrape: one PING per scrape, bounded
// by the store timeout, so an idle instance still tells of an outage. It
// pings the store itself, not its metered wrapper: the probe is not
// traffic, and is not counted as such in tokensvc_store_*.
type storeProbe struct {
	store   Store
	timeout time.Duration
}

func (p storeProbe) Describe(ch chan<- *prometheus.Desc) { ch <- storeUpDesc }

func (p storeProbe) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	up := 1.0
	if p.store.Ping(ctx) != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, up)
}
