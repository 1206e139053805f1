package plan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
)

// State is what the broker holds that a plan shows: the campaign's
// records and the events throughput is measured from. Either may be nil,
// and Notes then say why.
type State struct {
	Phases PhaseReader
	Events jetstream.Stream
	// LoginFailures is the count of refused source logins the extractors
	// keep (nil when the broker could not give it: the plan's logins are
	// then not limited, and a note says so).
	LoginFailures jetstream.KeyValue
	// JS reads the source passwords users handed over at sign-in (nil
	// without a broker).
	JS    jetstream.JetStream
	Notes []string
	b     *broker.Broker
}

// Close lets go of the broker, if one was opened.
func (s *State) Close() {
	if s.b != nil {
		s.b.Close()
	}
}

// OpenState opens what the broker of cfg has for a plan, never creating
// anything and never failing: the plan must not need a broker.
//
//   - nats.url set: it connects as a client; an unreachable broker is a
//     note.
//   - nats.url empty (embedded): a data_dir that holds no JetStream store
//     yet means nothing ran, a note. When nats.listen is set and a server
//     answers there (`mailferry nats`, or a `migrate` or `cutover start`
//     that listens), it connects to it as a client. Otherwise it starts
//     the embedded server on data_dir for the time of the plan, as
//     `mailferry status` does: that replays the store's index, seconds
//     even for a large store, and declares nothing. Like status, it must
//     not run while a process without nats.listen uses the same data_dir.
//
// A campaign bucket or events stream that does not exist yet is a note.
func OpenState(ctx context.Context, cfg config.NATS, log zerolog.Logger) *State {
	s := &State{}
	b, err := connect(ctx, cfg, log)
	if err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("campaign phases and measured throughput not read: %v", err))
		return s
	}
	if b == nil {
		s.Notes = append(s.Notes, fmt.Sprintf("no broker data in %s yet: no campaign phases, default throughput", cfg.DataDir))
		return s
	}
	s.b, s.JS = b, b.JS
	var missing *broker.MissingError
	switch err := b.Use(ctx, broker.Needs{Reads: []string{broker.BucketCampaign}}); {
	case errors.As(err, &missing):
		s.Notes = append(s.Notes, "no campaign yet: phases not shown")
	case err != nil:
		s.Notes = append(s.Notes, fmt.Sprintf("campaign phases not read: %v", err))
	default:
		st, err := campaign.Open(ctx, b)
		if err != nil {
			s.Notes = append(s.Notes, fmt.Sprintf("campaign phases not read: %v", err))
		} else {
			s.Phases = st
		}
	}
	if err := b.Use(ctx, broker.Needs{Writes: []string{broker.BucketLoginFailures}}); err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("source logins not limited by the refusals the extractors counted: %v", err))
	} else {
		s.LoginFailures = b.LoginFailures
	}
	switch err := b.Use(ctx, broker.Needs{Reads: []string{broker.StreamEvents}}); {
	case errors.As(err, &missing):
		// Nothing ran: the default throughput says so.
	case err != nil:
		s.Notes = append(s.Notes, fmt.Sprintf("throughput not measured: %v", err))
	default:
		ev, err := b.JS.Stream(ctx, broker.StreamEvents)
		if err != nil {
			s.Notes = append(s.Notes, fmt.Sprintf("throughput not measured: %v", err))
		} else {
			s.Events = ev
		}
	}
	return s
}

// connect is the broker OpenState reads, or nil when an embedded one has
// no store yet.
func connect(ctx context.Context, cfg config.NATS, log zerolog.Logger) (*broker.Broker, error) {
	if cfg.URL != "" {
		return broker.Connect(ctx, cfg, "mailferry-cutover-plan", log)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "jetstream")); err != nil {
		return nil, nil
	}
	if cfg.Listen != "" {
		c, err := net.DialTimeout("tcp", cfg.Listen, time.Second)
		if err == nil {
			c.Close()
			client := cfg
			client.URL = "nats://" + cfg.Listen
			if cfg.ListenCertFile != "" {
				client.URL = "tls://" + cfg.Listen
				if client.CAFile == "" {
					client.CAFile = cfg.ListenCertFile
				}
			}
			return broker.Connect(ctx, client, "mailferry-cutover-plan", log)
		}
	}
	return broker.Connect(ctx, cfg, "mailferry-cutover-plan", log)
}
