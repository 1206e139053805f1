// Command mailferry-extractor runs the extractor service on its own.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/metrics"
)

func main() { daemon.Main("extractor", extractor.CheckConfig, Run) }

// Run runs the extractor until ctx ends.
func Run(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
	s, err := extractor.LoadSettings(cfg)
	if err != nil {
		return err
	}
	return (&extractor.Service{Config: cfg, Settings: s, Broker: b, Log: log, Metrics: m}).Run(ctx)
}
