package metrics

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// ProbeEvery is how long a probe's answer stands: a readiness check is
// asked every few seconds by every scraper, and a peer (a customer's
// legacy mail server, a DNS primary) should not see a connection for
// each.
const ProbeEvery = 30 * time.Second

// Probe is a Ready that runs check at most once per every and answers
// with its last result in between; the first call runs it.
func Probe(every time.Duration, check func(ctx context.Context) error) Ready {
	var (
		mu   sync.Mutex
		last time.Time
		err  error
	)
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if last.IsZero() || time.Since(last) >= every {
			err, last = check(ctx), time.Now()
		}
		return err
	}
}

// Reachable is a check that a TCP connection to addr (host:port) opens
// within timeout; it sends nothing.
func Reachable(addr string, timeout time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("%s unreachable: %w", addr, err)
		}
		return c.Close()
	}
}
