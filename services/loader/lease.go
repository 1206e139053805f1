package loader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mailferry/mailferry/shared/subject"
)

// Lease makes one session the only writer of a mailbox: two loaders on one
// mailbox (a job handed out again while its first worker stalled) would
// reconcile each other's appends in flight and append twice.
type Lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// errBusy reports a mailbox another live session holds.
var errBusy = errors.New("mailbox is being loaded by another session")

// LeaseKey names a mailbox's lease.
func LeaseKey(mailbox string) string { return "lease." + subject.Key(mailbox) }

type lease struct {
	e       *casEntry[Lease]
	kv      jetstream.KeyValue
	ttl     time.Duration
	renewed time.Time
}

func acquire(ctx context.Context, kv jetstream.KeyValue, mailbox string, ttl time.Duration) (*lease, error) {
	e, err := loadEntry[Lease](ctx, kv, LeaseKey(mailbox))
	if err != nil {
		return nil, err
	}
	if e.exists() && time.Now().Before(e.V.Expires) {
		return nil, fmt.Errorf("%w (until %s)", errBusy, e.V.Expires.Format(time.RFC3339))
	}
	e.V = Lease{Owner: nuid.Next(), Expires: time.Now().Add(ttl).UTC()}
	if err := e.save(ctx, kv); err != nil {
		return nil, fmt.Errorf("%w: %v", errBusy, err)
	}
	return &lease{e: e, kv: kv, ttl: ttl, renewed: time.Now()}, nil
}

// renew extends the lease; it fails when another session took it over,
// and then nothing more may be written.
func (l *lease) renew(ctx context.Context) error {
	if time.Since(l.renewed) < l.ttl/3 {
		return nil
	}
	l.e.V.Expires = time.Now().Add(l.ttl).UTC()
	if err := l.e.save(ctx, l.kv); err != nil {
		return fmt.Errorf("lease of the mailbox lost: %w", err)
	}
	l.renewed = time.Now()
	return nil
}

func (l *lease) release(ctx context.Context) {
	_ = l.kv.Delete(ctx, l.e.key, jetstream.LastRevision(l.e.rev))
}
