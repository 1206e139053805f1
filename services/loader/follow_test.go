package loader

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// A session whose pull subscription went deaf (its pull request lost with
// a node that was killed or restarted) while its consumer has records
// follows the stream anew from the record after the last it took; one
// whose consumer has nothing waiting keeps its subscription.
func TestASessionWhoseConsumerDeliversNothingThoughRecordsWaitFollowsTheStreamAnew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lastSeq  uint64
		deaf     bool
		wantNext uint64 // the sequence the session reads next (0: none)
	}{
		{name: "deaf, records after the last taken", lastSeq: 3, deaf: true, wantNext: 4},
		{name: "deaf, nothing taken yet", deaf: true, wantNext: 1},
		{name: "listening, nothing waiting", lastSeq: 0, deaf: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.publishPass(corpusOf(6, "INBOX"), "")
			var logs syncbuf.Buffer
			ss := &session{svc: f.svc, j: f.job(), log: zerolog.New(&logs), lastSeq: tc.lastSeq}
			cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.Mailbox(srcUser)}}
			if tc.lastSeq > 0 {
				cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, tc.lastSeq+1
			}
			if !tc.deaf {
				// Everything taken: the consumer has nothing waiting.
				cc.DeliverPolicy = jetstream.DeliverNewPolicy
			}
			fl, err := ss.follow(f.ctx, cc)
			if err != nil {
				t.Fatal(err)
			}
			if tc.deaf {
				// The subscription reads a consumer that gets nothing,
				// while the session's consumer holds its records.
				empty, err := f.b.JS.OrderedConsumer(f.ctx, broker.StreamMail, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.Mailbox("nobody@old.example")}})
				if err != nil {
					t.Fatal(err)
				}
				fl.it.Stop()
				if fl.it, err = empty.Messages(); err != nil {
					t.Fatal(err)
				}
			}
			old := fl.it
			defer func() { fl.it.Stop() }()
			quiet := time.Now().Add(-2 * stuckAfter)
			ss.waitingSince, fl.created, fl.checked = quiet, quiet, quiet
			if err := ss.unstick(f.ctx, &fl, cc); err != nil {
				t.Fatal(err)
			}
			if tc.wantNext == 0 {
				if fl.it != old {
					t.Errorf("a listening subscription was replaced:\n%s", logs.String())
				}
				return
			}
			if fl.it == old {
				t.Fatalf("the deaf subscription was kept")
			}
			m, err := fl.it.Next(jetstream.NextMaxWait(5 * time.Second))
			if err != nil {
				t.Fatalf("after following anew: %v", err)
			}
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if meta.Sequence.Stream != tc.wantNext {
				t.Errorf("next record %d, want %d", meta.Sequence.Stream, tc.wantNext)
			}
			if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), "following the stream anew") {
				t.Errorf("no warning said so:\n%s", logs.String())
			}
		})
	}
}
