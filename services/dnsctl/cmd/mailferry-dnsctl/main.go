// Command mailferry-dnsctl runs the dnsctl service on its own: it switches
// a domain's mail records when the domain is provisioned at the new
// provider or its cutover is requested, and publishes dns.* events.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/metrics"
)

func main() { daemon.Main("dnsctl", dnsctl.CheckConfig, Run) }

// Run runs the dnsctl service until ctx ends.
func Run(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
	return (&dnsctl.Service{Config: cfg, Broker: b, Log: log, Metrics: m}).Run(ctx)
}
