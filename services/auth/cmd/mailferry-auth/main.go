// Command mailferry-auth runs the auth service on its own: the sign-in
// page and API, and the change-password page that sets each user's
// credential at the new provider.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/metrics"
)

func main() { daemon.Main(auth.ServiceName, auth.CheckConfig, Run) }

// Run runs the auth service until ctx ends.
func Run(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
	return (&auth.Service{Config: cfg, Broker: b, Log: log, Metrics: m}).Run(ctx)
}
