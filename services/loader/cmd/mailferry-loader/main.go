// Command mailferry-loader runs the loader service on its own.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/target/opensrs"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/metrics"
)

func main() { daemon.Main("loader", loader.CheckConfig, Run) }

// Run runs the loader until ctx ends.
func Run(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error {
	s, err := loader.LoadSettings(cfg)
	if err != nil {
		return err
	}
	svc := &loader.Service{Config: cfg, Settings: s, Broker: b, Log: log, Metrics: m}
	if cfg.Target.Auth == config.AuthToken {
		if svc.Minter, err = opensrs.NewMinter(cfg); err != nil {
			return err
		}
	}
	return svc.Run(ctx)
}
