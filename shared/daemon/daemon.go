// Package daemon is the common life of a mailferry service process: load
// the configuration, check the service's own section, set up logging,
// connect to the broker, run until SIGINT or SIGTERM, shut down in order.
// The broker comes connected but with nothing declared: a service declares
// what it writes and waits for what it reads (broker.Await) as it starts.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/logging"
	"github.com/mailferry/mailferry/shared/metrics"
)

// serviceMemory is the default heap limit of the services that have one.
var serviceMemory = map[string]int64{"extractor": PipelineServiceMemory, "loader": PipelineServiceMemory}

// Service runs until ctx ends. It counts what it does on m (nil-safe:
// the services keep it in their structs) and adds the readiness checks of
// its peers to it.
type Service func(ctx context.Context, cfg *config.Config, b *broker.Broker, log zerolog.Logger, m *metrics.Metrics) error

// Check reports what is wrong with the service's own section of cfg
// (extractor.CheckConfig, dnsctl.CheckConfig, ...). Run calls it before
// it starts or connects to the broker, so that a bad section is refused
// without side effects (an embedded server's data directory) and with the
// exit status of a configuration error.
type Check func(cfg *config.Config) error

// Main is a service binary's main: it parses -c, checks the service's
// section with check (nil: none), runs svc and exits with the status every
// mailferry command uses (2 for a bad command line or configuration, 1
// when the service fails).
func Main(name string, check Check, svc Service) { program(name, check, svc).Main() }

// Run runs svc with a logger and a broker connection made from cfg, once
// check (nil: none) accepts cfg; what it refuses is a command.ConfigError.
// With PprofDirEnv set it profiles the process (see Profile). With a
// metrics section that sets listen, it serves the process's metrics,
// /healthz and /readyz (shared/metrics) from before it connects to the
// broker until svc has returned; /readyz answers 200 only while the
// broker is connected and svc's own checks pass.
func Run(ctx context.Context, name string, cfg *config.Config, check Check, svc Service) error {
	if check != nil {
		if err := check(cfg); err != nil {
			return &command.ConfigError{Err: err}
		}
	}
	ms, err := metrics.LoadSettings(cfg)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	log, err := logging.Stderr(cfg.Log.Level, cfg.Log.Format, name)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	defer profileFromEnv(name, log)()
	LimitMemory(cfg, serviceMemory[name], log)
	m := metrics.New()
	m.AddReady("broker", func(context.Context) error { return errors.New("not connected yet") })
	srv, err := metrics.Serve(ms, m, log)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Close(sctx)
	}()
	b, err := ConnectBroker(ctx, cfg, name, log)
	if err != nil {
		return err
	}
	defer b.Close()
	m.AddReady("broker", brokerReady(b))
	log.Info().Msg("service started")
	err = b.Explain(svc(ctx, cfg, b, log, m))
	log.Info().Err(err).Msg("service stopped")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// brokerReady is the readiness of b's connection.
func brokerReady(b *broker.Broker) metrics.Ready {
	return func(context.Context) error {
		if st := b.Conn.Status(); st != nats.CONNECTED {
			return fmt.Errorf("connection %s", strings.ToLower(st.String()))
		}
		return nil
	}
}

// OpenBroker connects to the broker and declares every stream, bucket and
// store (broker.Open), waiting for the server while it is not up yet: the
// all-in-one runner's way (migrate).
func OpenBroker(ctx context.Context, cfg *config.Config, name string, log zerolog.Logger) (*broker.Broker, error) {
	if cfg.NATS.URL == "" {
		LimitMemory(cfg, EmbeddedServerMemory, log)
	}
	return connect(ctx, cfg, name, log, broker.Open)
}

// Soft limits of the Go heap a process gets when memory_limit is 0.
const (
	// EmbeddedServerMemory is for a process that hosts the embedded
	// server: its file store keeps every block read or written in the
	// last 10 s cached (weakly held), which without a limit lets the heap
	// grow with the throughput.
	EmbeddedServerMemory = 192 << 20
	// PipelineServiceMemory is for the extractor and the loader, whose
	// live data is bounded (publish window, pull window, one chunk of a
	// large body) but whose garbage grows with the message sizes.
	PipelineServiceMemory = 48 << 20
)

// LimitMemory sets the Go heap's soft limit to cfg's memory_limit, or to
// def when that is 0 (def 0: no limit), unless GOMEMLIMIT is set (the
// runtime applied it) or memory_limit is -1.
func LimitMemory(cfg *config.Config, def int64, log zerolog.Logger) {
	limit := cfg.MemoryLimit
	if limit == 0 {
		limit = def
	}
	if os.Getenv("GOMEMLIMIT") != "" || limit <= 0 {
		return
	}
	debug.SetMemoryLimit(limit)
	log.Debug().Int64("bytes", limit).Msg("heap soft limit set")
}

// ConnectBroker connects to the broker (broker.Connect) without declaring
// anything, waiting for the server while it is not up yet (a service
// started before its server, or during the server's restart); it says
// once what it waits for. A refused login is not waited out.
func ConnectBroker(ctx context.Context, cfg *config.Config, name string, log zerolog.Logger) (*broker.Broker, error) {
	return connect(ctx, cfg, name, log, broker.Connect)
}

func connect(ctx context.Context, cfg *config.Config, name string, log zerolog.Logger,
	open func(context.Context, config.NATS, string, zerolog.Logger) (*broker.Broker, error)) (*broker.Broker, error) {
	retry := backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Attempts: 30}
	for attempt := 0; ; attempt++ {
		b, err := open(ctx, cfg.NATS, "mailferry-"+name, log)
		if err == nil || cfg.NATS.URL == "" || errors.Is(err, nats.ErrAuthorization) {
			return b, err
		}
		if attempt == 0 {
			log.Info().Err(err).Str("url", cfg.NATS.URL).Msg("waiting for the broker")
		} else {
			log.Debug().Err(err).Int("attempt", attempt+1).Msg("broker not reachable yet")
		}
		if !retry.Wait(ctx, attempt) {
			return nil, err
		}
	}
}
