package dnsbench_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry-lab/dnsbench"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
)

// TestBenchSwitchesEveryLegacyZoneWithEachMethod runs the benchmark on 40
// zones per method: each method must switch all 24 legacy zones on both
// servers (the scripts' checks wait for that) and report its times.
func TestBenchSwitchesEveryLegacyZoneWithEachMethod(t *testing.T) {
	bindtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := dnsbench.Run(ctx, dnsbench.Options{Zones: 40, Concurrency: 8, Rate: -1, Dir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Switched != 24 {
		t.Errorf("switched %d zones, want 24 of 40", res.Switched)
	}
	for name, tm := range map[string]dnsbench.Timing{"dnsctl": res.Dnsctl, "per zone": res.PerZone, "batch": res.Batch} {
		if tm.Apply <= 0 || tm.Verify <= 0 {
			t.Errorf("%s: times %+v", name, tm)
		}
	}
	if res.Dnsctl.Plan <= 0 {
		t.Errorf("dnsctl plan time %s", res.Dnsctl.Plan)
	}
}
