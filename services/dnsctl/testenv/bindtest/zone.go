package bindtest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// AXFR transfers zone from s, signed with the transfer key, and returns
// its records in presentation format in the order the server sent them.
// Comparing two transfers from one server shows whether a zone changed at
// all, SOA serial included.
func (c *Cluster) AXFR(ctx context.Context, s *Server, zone string) ([]string, error) {
	m := new(dns.Msg)
	m.SetAxfr(dns.CanonicalName(zone))
	m.SetTsig(c.xfrKey.Name, c.xfrKey.Algorithm, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: c.xfrKey.Secrets(), DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second}
	env, err := tr.In(m, s.Addr)
	if err != nil {
		return nil, fmt.Errorf("axfr %s from %s: %w", zone, s.Addr, err)
	}
	var out []string
	for e := range env {
		if e.Error != nil {
			return nil, fmt.Errorf("axfr %s from %s: %w", zone, s.Addr, e.Error)
		}
		for _, rr := range e.RR {
			out = append(out, rr.String())
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out, nil
}

// NSUpdate runs nsupdate against the primary, signed with the update key,
// with the given commands ("update delete ...", "send"); it plays the
// operator who edits a zone by hand.
func (c *Cluster) NSUpdate(ctx context.Context, commands string) error {
	host, port, _ := strings.Cut(c.Primary.Addr, ":")
	script := fmt.Sprintf("server %s %s\n%s\n", host, port, strings.TrimSpace(commands))
	if !strings.Contains(script, "\nsend\n") {
		script += "send\n"
	}
	cmd := exec.CommandContext(ctx, "nsupdate", "-k", c.KeyFile)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nsupdate: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// WaitSynced waits until the secondary serves the primary's serial of
// every zone.
func (c *Cluster) WaitSynced(ctx context.Context, zones []string) error {
	if c.Secondary == nil {
		return nil
	}
	for _, z := range zones {
		for {
			want, err := c.Primary.Serial(ctx, z)
			if err != nil {
				return err
			}
			got, err := c.Secondary.Serial(ctx, z)
			if err == nil && got == want {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("secondary serial of %s: %d, primary %d: %w; the secondary's log on it:\n%s",
					z, got, want, ctx.Err(), c.Secondary.LogAbout(z, 10))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
