package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
)

// Command is svc as a command: `NAME -c FILE` loads the configuration,
// checks the service's section with check (nil: none) and runs svc until
// SIGINT or SIGTERM. The service binaries and mailferry's own extractor,
// loader and dnsctl commands are made by it, so they take the same flags
// and fail the same way.
func Command(name, short string, check Check, svc Service) *command.Command {
	return &command.Command{
		Name:      name,
		UsageLine: "[-c FILE]",
		Short:     short,
		Long: fmt.Sprintf(`Runs the %s service until SIGINT or SIGTERM: loads the configuration and
checks the service's own section, connects to the broker (waiting for it
while it is not up yet), and stops in order.`, name),
		Setup: func(fs *flag.FlagSet) command.Run {
			path := command.ConfigFlag(fs)
			return func(ctx context.Context, _, _ io.Writer) error {
				cfg, err := config.Load(*path)
				if err != nil {
					return &command.ConfigError{Err: err}
				}
				return Run(ctx, name, cfg, check, svc)
			}
		},
	}
}

// program is a service binary: Command as its only command.
func program(name string, check Check, svc Service) *command.Program {
	c := Command(name, fmt.Sprintf("run the %s service", name), check, svc)
	c.Name = ""
	return &command.Program{Name: "mailferry-" + name, Commands: []*command.Command{c}}
}
