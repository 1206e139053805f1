// Package authdns reads records from authoritative DNS servers, never from
// a recursive resolver: queries go without recursion desired and only
// authoritative answers count.
package authdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// ErrNotAuthoritative is wrapped by errors for answers that are not
// authoritative: the server refused, or does not serve the name.
var ErrNotAuthoritative = errors.New("server is not authoritative")

// Client queries authoritative servers. Its zero value is usable; it is
// safe for concurrent use.
type Client struct {
	// Timeout bounds one exchange (default 5s).
	Timeout time.Duration
	// Attempts is how often a query that timed out is sent (default 2):
	// queries are idempotent and a busy server drops UDP.
	Attempts int
}

func (c *Client) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

// Query asks server for name and typ and returns an authoritative answer
// (rcode NOERROR or NXDOMAIN, AA set). It retries timeouts and falls back
// to TCP when the UDP answer is truncated.
func (c *Client) Query(ctx context.Context, server, name string, typ uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), typ)
	q.RecursionDesired = false
	q.SetEdns0(4096, false)
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 2
	}
	var r *dns.Msg
	var err error
	for i := 0; i < attempts; i++ {
		r, err = c.exchange(ctx, server, q)
		if !isTimeout(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("query %s %s at %s: %w", name, dns.TypeToString[typ], server, err)
	}
	if err := authoritative(r); err != nil {
		return nil, fmt.Errorf("query %s %s at %s: %w", name, dns.TypeToString[typ], server, err)
	}
	return r, nil
}

func (c *Client) exchange(ctx context.Context, server string, q *dns.Msg) (*dns.Msg, error) {
	cl := &dns.Client{Net: "udp", Timeout: c.timeout(), UDPSize: 4096}
	r, _, err := cl.ExchangeContext(ctx, q, server)
	if err == nil && r.Truncated {
		cl.Net = "tcp"
		r, _, err = cl.ExchangeContext(ctx, q, server)
	}
	if err != nil {
		return nil, err
	}
	if r.Id != q.Id {
		return nil, errors.New("answer id does not match the query")
	}
	return r, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func authoritative(r *dns.Msg) error {
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	case dns.RcodeRefused, dns.RcodeNotAuth:
		return fmt.Errorf("%w: answered %s", ErrNotAuthoritative, dns.RcodeToString[r.Rcode])
	default:
		return fmt.Errorf("server answered %s", dns.RcodeToString[r.Rcode])
	}
	if !r.Authoritative {
		return fmt.Errorf("%w: answer without the AA bit (a referral or a cache)", ErrNotAuthoritative)
	}
	return nil
}

// RRset reads one RRset from server.
func (c *Client) RRset(ctx context.Context, server, name string, typ uint16) (records.RRset, error) {
	r, err := c.Query(ctx, server, name, typ)
	if err != nil {
		return records.RRset{}, err
	}
	return records.FromRRs(name, typ, r.Answer), nil
}

// Serial reads the SOA serial of zone from server. The zone must be
// served there: its SOA must be in the answer, owned by zone.
func (c *Client) Serial(ctx context.Context, server, zone string) (uint32, error) {
	soa, err := c.RRset(ctx, server, zone, dns.TypeSOA)
	if err != nil {
		return 0, err
	}
	return serialOf(soa, server)
}

func serialOf(soa records.RRset, server string) (uint32, error) {
	if len(soa.Data) != 1 {
		return 0, fmt.Errorf("%w: %s is no zone apex at %s (no SOA)", ErrNotAuthoritative, soa.Name, server)
	}
	rrs, err := soa.RRs()
	if err != nil {
		return 0, err
	}
	return rrs[0].(*dns.SOA).Serial, nil
}

// SerialAtLeast reports whether serial a is b or later in RFC 1982 serial
// number arithmetic, which lets serials wrap around.
func SerialAtLeast(a, b uint32) bool {
	return a == b || int32(a-b) > 0
}
