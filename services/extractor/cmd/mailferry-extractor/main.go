// Command mailferry-extractor runs the extractor service on its own.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/logging"
)

func main() {
	path := flag.String("c", "mailferry.yaml", "configuration file")
	flag.Parse()
	if err := run(*path); err != nil {
		fmt.Fprintln(os.Stderr, "mailferry-extractor:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	log, err := logging.Stderr(cfg.Log.Level, cfg.Log.Format, "extractor")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := broker.Open(ctx, cfg.NATS, "mailferry-extractor", log)
	if err != nil {
		return err
	}
	defer b.Close()
	return (&extractor.Service{Config: cfg, Broker: b, Log: log}).Run(ctx)
}
