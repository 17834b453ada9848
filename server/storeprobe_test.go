package server

import (
	"fmt"
	"testing"

	"github.com/tokensvc/tokensvc/store"
)

// tokensvc_store_up pings the store at each scrape, traffic or not.
func TestStoreUp(t *testing.T) {
	_, reg := newMetricsHarness(t, nil)
	if got := sample(t, reg, "tokensvc_store_up", nil); got != 1 {
		t.Errorf("tokensvc_store_up with the store answering = %v, want 1", got)
	}
	_, reg = newMetricsHarness(t, func(c *Config) {
		c.Store = failingStore{err: fmt.Errorf("dial: %w", store.ErrUnavailable)}
	})
	if got := sample(t, reg, "tokensvc_store_up", nil); got != 0 {
		t.Errorf("tokensvc_store_up with the store down = %v, want 0", got)
	}
}
