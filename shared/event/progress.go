package event

import (
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/mailferry/mailferry/shared/subject"
)

// Progress is a sample of one service's work on a mailbox, sent on core
// NATS: lost samples do not matter, the next one carries the totals.
type Progress struct {
	Service  string `json:"service"`
	Mailbox  string `json:"mailbox"`
	Pass     string `json:"pass"`
	Messages int64  `json:"messages"`
	Bytes    int64  `json:"bytes"`
	Skipped  int64  `json:"skipped,omitempty"`
	Dead     int64  `json:"dead,omitempty"`
	// Total is the number of messages known to exist so far.
	Total int64 `json:"total,omitempty"`
}

// SendProgress publishes p; errors are ignored on purpose.
func SendProgress(nc *nats.Conn, p Progress) {
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	_ = nc.Publish(subject.Progress(p.Service, p.Mailbox), b)
}
