package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/authdns"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/shared/event"
)

// Poll intervals of verification: short at first, as a secondary usually
// follows within milliseconds, then backing off.
const (
	pollFirst = 50 * time.Millisecond
	pollMax   = time.Second
)

// Verify waits until every authoritative server of each switched domain
// (the configured ones and, with VerifyNS, the zone's NS hosts) serves the
// new records with at least the serial of the update, for at most
// VerifyTimeout per domain. Domains dnsctl has not switched are skipped.
func (e *Engine) Verify(ctx context.Context, domains []string) (*Report, error) {
	start := time.Now()
	r := newReport("verify", len(domains))
	ns := &nsAddrs{e: e, byHost: map[string]nsResult{}}
	e.forEach(ctx, "verify", len(domains), func(ctx context.Context, i int) {
		r.Results[i] = e.verifyDomain(ctx, domains[i], ns)
	})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return r.finish(start), nil
}

func (e *Engine) verifyDomain(ctx context.Context, domain string, ns *nsAddrs) Result {
	en, err := e.Journal.Get(ctx, domain)
	if err != nil {
		return Result{Domain: domain, Outcome: Failed, Error: err.Error()}
	}
	if en == nil || !en.Switched() {
		state := "no journal entry"
		if en != nil {
			state = "journal state " + string(en.State)
		}
		return Result{Domain: domain, Outcome: Skipped, Code: "not_switched", Reason: "not switched by dnsctl (" + state + ")"}
	}
	servers, err := e.serversOf(ctx, domain, ns)
	if err != nil {
		return e.failed(ctx, domain, "verify", err)
	}
	vctx, cancel := context.WithTimeout(ctx, e.VerifyTimeout)
	defer cancel()
	for _, s := range servers {
		if err := e.waitServer(vctx, s, en); err != nil {
			return e.failed(ctx, domain, "verify", err)
		}
	}
	return e.verified(ctx, en, servers)
}

func (e *Engine) verified(ctx context.Context, en *journal.Entry, servers []string) Result {
	now := e.now()
	en, err := e.Journal.Modify(ctx, en.Domain, func(x *journal.Entry) error {
		if !x.Switched() {
			return fmt.Errorf("journal %s: state changed to %s during verification", x.Domain, x.State)
		}
		if x.State == journal.Verified {
			// Verified before: the old records began to expire then.
			return nil
		}
		x.State, x.VerifiedAt = journal.Verified, now
		x.OldTTLExpiresAt = x.ExpiresAt(now)
		return nil
	})
	if err != nil {
		return e.failed(ctx, en.Domain, "verify", err)
	}
	if err := e.publish(ctx, event.Switched(en.Domain, SwitchedData{
		Serial: en.Serial, OldTTL: en.OldTTL, OldTTLExpiresAt: en.OldTTLExpiresAt,
		VerifiedAt: en.VerifiedAt, Servers: servers, PlanID: en.PlanID,
	})); err != nil {
		return e.failed(ctx, en.Domain, "verify", err)
	}
	e.Log.Info().Str("domain", en.Domain).Uint32("serial", en.Serial).Time("old_ttl_expires_at", en.OldTTLExpiresAt).Msg("domain verified")
	return Result{Domain: en.Domain, Outcome: Verified, Serial: en.Serial, OldTTLExpiresAt: en.OldTTLExpiresAt, Servers: servers}
}

// waitServer polls server until it serves the entry's new records.
func (e *Engine) waitServer(ctx context.Context, server string, en *journal.Entry) error {
	delay := pollFirst
	for {
		last := e.serves(ctx, server, en)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("verify %s at %s: %w (gave up after %s)", en.Domain, server, last, e.VerifyTimeout)
		case <-time.After(delay):
		}
		delay = min(2*delay, pollMax)
	}
}

// serves returns nil when server has the entry's serial (or a later one)
// and its new RRsets, else what it serves instead.
func (e *Engine) serves(ctx context.Context, server string, en *journal.Entry) error {
	serial, err := e.Client.Serial(ctx, server, en.Domain)
	if err != nil {
		return err
	}
	if !authdns.SerialAtLeast(serial, en.Serial) {
		return fmt.Errorf("serves serial %d, not yet %d", serial, en.Serial)
	}
	for _, c := range en.Changes {
		got, err := e.Client.RRset(ctx, server, c.New.Name, c.New.TypeCode())
		if err != nil {
			return err
		}
		if !got.Equal(c.New) {
			return fmt.Errorf("serves %s %s %s, not %s", c.New.Name, c.New.Type, brief(got), brief(c.New))
		}
	}
	return nil
}

// serversOf lists the servers that must serve domain: the configured ones
// and, with VerifyNS, the addresses of its NS hosts.
func (e *Engine) serversOf(ctx context.Context, domain string, ns *nsAddrs) ([]string, error) {
	out := slices.Clone(e.VerifyServers)
	if !e.VerifyNS {
		if len(out) == 0 {
			out = []string{e.server()}
		}
		return out, nil
	}
	set, err := e.Client.RRset(ctx, e.server(), domain, dns.TypeNS)
	if err != nil {
		return nil, err
	}
	for _, host := range set.Data {
		addrs, err := ns.of(ctx, dns.CanonicalName(host))
		if err != nil {
			return nil, err
		}
		out = append(out, addrs...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// nsAddrs resolves NS hosts once per run: thousands of zones share them.
type nsAddrs struct {
	e      *Engine
	mu     sync.Mutex
	byHost map[string]nsResult
}

type nsResult struct {
	addrs []string
	err   error
}

func (n *nsAddrs) of(ctx context.Context, host string) ([]string, error) {
	n.mu.Lock()
	r, ok := n.byHost[host]
	n.mu.Unlock()
	if ok {
		return r.addrs, r.err
	}
	r.addrs, r.err = n.resolve(ctx, host)
	n.mu.Lock()
	n.byHost[host] = r
	n.mu.Unlock()
	return r.addrs, r.err
}

func (n *nsAddrs) resolve(ctx context.Context, host string) ([]string, error) {
	var out []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		set, err := n.e.Client.RRset(ctx, n.e.server(), host, t)
		if errors.Is(err, authdns.ErrNotAuthoritative) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("address of NS host %s: %w", host, err)
		}
		for _, a := range set.Data {
			out = append(out, net.JoinHostPort(a, strconv.Itoa(n.e.NSPort)))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("NS host %s has no address the primary serves: list its address in dns.verify_servers and set dns.verify_ns: false", host)
	}
	return out, nil
}
