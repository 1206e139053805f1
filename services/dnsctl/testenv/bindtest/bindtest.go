// Package bindtest starts isolated BIND 9 authoritative servers on
// loopback for tests and benchmarks: a primary that takes TSIG-signed
// RFC 2136 updates under an update-policy, and a secondary that follows it
// by NOTIFY and IXFR on explicit ports.
//
// Each server lives in its own directory (named.conf, zone files and their
// journals, log), listens on a free port of 127.0.0.1 only and runs as a
// child of the calling process in its own process group, so Stop kills it
// with everything it started. The rates that throttle a stock BIND
// (notify-rate, serial-query-rate, notify-delay) are raised so that
// thousands of zones change and propagate in seconds.
//
// Requirements: Debian's bind9 (named) and bind9-dnsutils (nsupdate, dig),
// and root, as named runs here without -u.
package bindtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/bindkey"
)

// Debian packages that provide named, and nsupdate and dig.
const (
	DebianPackage      = "bind9"
	DebianUtilsPackage = "bind9-dnsutils"
)

// Default names of the keys a cluster creates.
const (
	DefaultKeyName = "dnsctl-key"
	xfrKeyName     = "xfr-key"
)

// DefaultUpdateTypes are the types the update key may change: the mail
// records, never NS or SOA.
var DefaultUpdateTypes = []string{"MX", "A", "AAAA", "TXT", "CNAME", "SRV"}

// Timeouts for process control, generous for a two-core CI machine.
const (
	stopGrace = 10 * time.Second
	// startAttempts bounds restarts after another process took a port.
	startAttempts = 5
	// startTTimeout bounds StartT; thousands of zones load slower on CI.
	startTTimeout = 3 * time.Minute
)

// tempPrefix names the instance directories StartT creates in os.TempDir.
const tempPrefix = "mailferry-bindtest-"

// Zone is one zone to serve.
type Zone struct {
	// Name is the zone apex, fully qualified.
	Name string
	// Text is the zone file; relative names are relative to Name.
	Text string
}

// Options configures a cluster.
type Options struct {
	Zones []Zone
	// KeyName names the update key (default DefaultKeyName).
	KeyName string
	// UpdateTypes the key may change in every zone (default
	// DefaultUpdateTypes).
	UpdateTypes []string
	// NoSecondary starts the primary only.
	NoSecondary bool
}

// Cluster is a running primary and, unless NoSecondary, a secondary.
type Cluster struct {
	Primary   *Server
	Secondary *Server
	// Dir holds both servers' directories and the key files.
	Dir string
	// KeyFile is a BIND key file holding Key, the update key.
	KeyFile string
	Key     bindkey.Key
	// Zones are the zone names, as given.
	Zones []string

	xfrKey bindkey.Key
}

// Servers returns the running servers, primary first.
func (c *Cluster) Servers() []*Server {
	if c.Secondary == nil {
		return []*Server{c.Primary}
	}
	return []*Server{c.Primary, c.Secondary}
}

// Start writes the configuration and zones into dir (created if missing),
// starts the servers and waits until each serves every zone.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	if _, err := exec.LookPath("named"); err != nil {
		return nil, fmt.Errorf("named not found on PATH (install Debian package %s): %w", DebianPackage, err)
	}
	c, err := newCluster(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func newCluster(dir string, opts Options) (*Cluster, error) {
	if opts.KeyName == "" {
		opts.KeyName = DefaultKeyName
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bindtest dir: %w", err)
	}
	c := &Cluster{Dir: abs, KeyFile: filepath.Join(abs, opts.KeyName+".key")}
	if c.Key, err = newKey(opts.KeyName); err != nil {
		return nil, err
	}
	if c.xfrKey, err = newKey(xfrKeyName); err != nil {
		return nil, err
	}
	for _, z := range opts.Zones {
		c.Zones = append(c.Zones, dns.CanonicalName(z.Name))
	}
	return c, nil
}

// newKey makes an hmac-sha256 key as tsig-keygen does.
func newKey(name string) (bindkey.Key, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return bindkey.Key{}, fmt.Errorf("tsig key: %w", err)
	}
	return bindkey.New(name, "hmac-sha256", base64.StdEncoding.EncodeToString(b))
}

// KeyText returns k as a BIND key file statement.
func KeyText(k bindkey.Key) string {
	return fmt.Sprintf("key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n",
		strings.TrimSuffix(k.Name, "."), strings.TrimSuffix(k.Algorithm, "."), k.Secret())
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("bindtest dir: %w", err)
	}
	if err := os.WriteFile(c.KeyFile, []byte(KeyText(c.Key)), 0o600); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	keys := KeyText(c.Key) + KeyText(c.xfrKey)
	if err := os.WriteFile(filepath.Join(c.Dir, "keys.conf"), []byte(keys), 0o600); err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err := c.startServers(ctx, opts)
		if err == nil {
			break
		}
		c.Stop()
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			return err
		}
	}
	for _, s := range c.Servers() {
		if err := s.waitZones(ctx, c.Zones); err != nil {
			return err
		}
	}
	return nil
}

// startServers picks ports, writes the configurations and starts named.
func (c *Cluster) startServers(ctx context.Context, opts Options) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	c.Primary = newServer(filepath.Join(c.Dir, "primary"), ports[0])
	c.Secondary = nil
	if !opts.NoSecondary {
		c.Secondary = newServer(filepath.Join(c.Dir, "secondary"), ports[1])
	}
	if err := c.writeConfigs(opts); err != nil {
		return err
	}
	for _, s := range c.Servers() {
		if err := s.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops both servers. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Servers() {
		if s != nil {
			errs = append(errs, s.Stop())
		}
	}
	return errors.Join(errs...)
}

// freePorts finds n ports free for both TCP and UDP on 127.0.0.1. They
// are drawn below the kernel's ephemeral range, where no process's
// outgoing socket (other BIND instances send thousands of queries) can
// take one between this check and named's bind; another test's named
// still can, which start notices by the server-id.
func freePorts(n int) ([]int, error) {
	lo, hi := portRange()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for attempt := 0; len(ports) < n && attempt < 1000; attempt++ {
		port := lo + mrand.IntN(hi-lo)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		held = append(held, l)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, errors.New("free port: none free for both TCP and UDP")
	}
	return ports, nil
}

// portRange returns ports to draw from: [10000, start of the ephemeral
// range).
func portRange() (int, int) {
	lo, hi := 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start > lo+1000 {
			hi = start
		}
	}
	return lo, hi
}

// errExited reports a named that ended before it was stopped.
var errExited = errors.New("named exited")
