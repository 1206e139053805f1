package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
)

// ServerOptions reads a nats-server configuration file with the server
// library's own parser, so that a file Debian's `nats-server -c FILE`
// runs is read the same way by `mailferry nats -config FILE` (includes and
// $VARIABLE references to the environment included). It refuses a file
// under which a listener would accept a connection without
// authentication (CheckListeners).
func ServerOptions(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats-server configuration %s: %w", path, err)
	}
	if err := CheckListeners(opts); err != nil {
		return nil, fmt.Errorf("nats-server configuration %s: %w", path, err)
	}
	return opts, nil
}

// CheckListeners refuses options under which a listener would take a
// connection without authentication: clients without an authorization
// block (users, nkeys, a user and password, an operator, TLS certificate
// mapping or auth callout), a no_auth_user that lets anyone in as a
// user, a cluster port without route credentials, a monitoring port on an
// address other than loopback (it has no authentication at all), and
// the listeners mailferry does not check (leafnodes, gateways,
// websocket, MQTT), which nats-server itself can run.
func CheckListeners(opts *server.Options) error {
	if !clientAuth(opts) {
		return errors.New("clients may connect without authentication: add an authorization block (users with passwords) or accounts, an operator, or TLS certificate mapping (verify_and_map)")
	}
	if opts.NoAuthUser != "" {
		return fmt.Errorf("no_auth_user %s lets clients in without authentication: remove it", opts.NoAuthUser)
	}
	if opts.Cluster.Port != 0 && opts.Cluster.Username == "" && !opts.Cluster.TLSMap {
		return errors.New("the cluster port accepts routes without authentication: set cluster.authorization (user and password) on every node")
	}
	for _, l := range []struct {
		name string
		port int
	}{
		{"leafnodes", opts.LeafNode.Port},
		{"gateway", opts.Gateway.Port},
		{"websocket", opts.Websocket.Port},
		{"mqtt", opts.MQTT.Port},
	} {
		if l.port != 0 {
			return fmt.Errorf("%s listener: mailferry nats does not run it (its authentication is not checked here); remove it, or run Debian's nats-server", l.name)
		}
	}
	if opts.HTTPPort != 0 || opts.HTTPSPort != 0 {
		host := opts.HTTPHost
		if host == "" {
			host = opts.Host
		}
		if !config.Loopback(host) {
			return fmt.Errorf("the monitoring port listens on %q, which has no authentication: set http to a loopback address (http: 127.0.0.1:8222) or remove it", listenHost(host))
		}
	}
	return nil
}

func clientAuth(opts *server.Options) bool {
	return opts.Username != "" || opts.Authorization != "" || len(opts.Users) > 0 || len(opts.Nkeys) > 0 ||
		len(opts.TrustedOperators) > 0 || len(opts.TrustedKeys) > 0 || opts.AuthCallout != nil ||
		(opts.TLSVerify && opts.TLSMap) || opts.CustomClientAuthentication != nil
}

func listenHost(host string) string {
	if host == "" {
		return "0.0.0.0"
	}
	return host
}

// RunServer runs a nats-server with opts (from ServerOptions) until ctx
// ends, logging as nats-server does (to standard error, or where the file
// says), then shuts it down. A client listener on an address other than
// loopback without TLS is run, with a warning: the passwords cross the
// network in the clear.
func RunServer(ctx context.Context, opts *server.Options, log zerolog.Logger) error {
	opts.NoSigs = true // ctx is the process's signals
	if !opts.TLS && !config.Loopback(opts.Host) {
		log.Warn().Str("host", listenHost(opts.Host)).Int("port", opts.Port).Msg("clients connect without TLS: passwords cross the network in the clear; set the tls block")
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	srv.ConfigureLogger()
	srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(30 * time.Second) {
		return errors.New("nats-server: not ready for connections after 30s")
	}
	log.Info().Str("server_name", srv.Name()).Str("client_url", srv.ClientURL()).Str("cluster", opts.Cluster.Name).
		Str("store_dir", opts.StoreDir).Bool("jetstream", opts.JetStream).Bool("sync_always", opts.SyncAlways).
		Str("routes", strings.Join(routeHosts(opts), ",")).Msg("nats-server running")
	<-ctx.Done()
	return nil
}

// routeHosts are the hosts and ports of the configured routes, without
// the credentials a route URL may hold.
func routeHosts(opts *server.Options) []string {
	var out []string
	for _, u := range opts.Routes {
		out = append(out, net.JoinHostPort(u.Hostname(), u.Port()))
	}
	return out
}
