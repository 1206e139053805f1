package bindtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"
)

func (c *Cluster) writeConfigs(opts Options) error {
	types := opts.UpdateTypes
	if len(types) == 0 {
		types = DefaultUpdateTypes
	}
	for _, s := range c.Servers() {
		if err := os.MkdirAll(filepath.Join(s.Dir, "zones"), 0o755); err != nil {
			return fmt.Errorf("bindtest: %w", err)
		}
		for _, z := range opts.Zones {
			if err := os.WriteFile(s.zoneFile(z.Name), []byte(z.Text), 0o644); err != nil {
				return fmt.Errorf("bindtest: write zone %s: %w", z.Name, err)
			}
		}
	}
	var b strings.Builder
	c.writeCommon(&b, c.Primary)
	fmt.Fprintf(&b, "\tnotify explicit;\n\tallow-transfer { key %s; };\n\tmax-ixfr-ratio unlimited;\n", xfrKeyName)
	if c.Secondary != nil {
		fmt.Fprintf(&b, "\talso-notify { 127.0.0.1 port %d key %s; };\n", c.Secondary.port, xfrKeyName)
	}
	b.WriteString("};\n")
	grant := fmt.Sprintf("grant %s zonesub %s;", strings.TrimSuffix(c.Key.Name, "."), strings.Join(types, " "))
	for _, z := range c.Zones {
		fmt.Fprintf(&b, "zone %q { type primary; file %q; update-policy { %s }; };\n",
			strings.TrimSuffix(z, "."), c.Primary.zoneFile(z), grant)
	}
	if err := os.WriteFile(c.Primary.ConfPath, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("bindtest: write %s: %w", c.Primary.ConfPath, err)
	}
	if c.Secondary == nil {
		return nil
	}
	b.Reset()
	c.writeCommon(&b, c.Secondary)
	// A refresh that fails under load (a lost NOTIFY's SOA query) is
	// retried after the SOA retry, at least min-retry-time: 500 s by
	// default, longer than any test waits.
	fmt.Fprintf(&b, "\tnotify no;\n\tallow-transfer { key %s; };\n\tmin-retry-time 1;\n\tmax-retry-time 5;\n};\n", xfrKeyName)
	for _, z := range c.Zones {
		// The secondary starts from the same text as the primary, so
		// thousands of zones need no initial transfer.
		fmt.Fprintf(&b, "zone %q { type secondary; file %q; masterfile-format text; primaries { 127.0.0.1 port %d key %s; }; };\n",
			strings.TrimSuffix(z, "."), c.Secondary.zoneFile(z), c.Primary.port, xfrKeyName)
	}
	if err := os.WriteFile(c.Secondary.ConfPath, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("bindtest: write %s: %w", c.Secondary.ConfPath, err)
	}
	return nil
}

// writeCommon writes the key include and the options both servers share,
// leaving the options block open.
func (c *Cluster) writeCommon(b *strings.Builder, s *Server) {
	fmt.Fprintf(b, "include %q;\n", filepath.Join(c.Dir, "keys.conf"))
	fmt.Fprintf(b, "controls { };\n")
	fmt.Fprintf(b, `logging {
	channel main { file %q versions 2 size 50m; severity info; print-time yes; print-category yes; print-severity yes; };
	category default { main; };
	category lame-servers { null; };
	category xfer-out { null; };
	category notify { null; };
};
`, s.LogPath)
	fmt.Fprintf(b, `options {
	server-id %q;
	directory %q;
	pid-file %q;
	session-keyfile %q;
	managed-keys-directory %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify-rate 5000;
	startup-notify-rate 5000;
	serial-query-rate 5000;
	notify-delay 0;
	transfers-in 200;
	transfers-out 200;
	transfers-per-ns 200;
	tcp-clients 1000;
`, s.id, s.Dir, filepath.Join(s.Dir, "named.pid"), filepath.Join(s.Dir, "session.key"), s.Dir, s.port)
}

func (s *Server) zoneFile(zone string) string {
	return filepath.Join(s.Dir, "zones", strings.TrimSuffix(dns.CanonicalName(zone), ".")+".db")
}
