package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/record"
)

func TestReplayPastRetentionNamesTheFirstMissingSequence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.Parse([]byte(fmt.Sprintf("nats: {data_dir: %s}\n", t.TempDir())), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "ops-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const mbx = "a@old.example"
	for uid := uint32(1); uid <= 20; uid++ {
		m, _ := record.MessageMsg(&record.Message{Mailbox: mbx, Folder: "INBOX", UIDValidity: 1, UID: uid, Size: 1}, []byte("x"))
		if _, err := b.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.JS.Stream(ctx, broker.StreamMail)
	if err != nil {
		t.Fatal(err)
	}
	// Retention removed the first ten records.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(11)); err != nil {
		t.Fatal(err)
	}
	boxes := []job.Mailbox{{SourceUser: mbx, TargetUser: mbx}}

	_, err = Replay(ctx, b, boxes, ReplayRequest{Mailbox: mbx, FromSeq: 4})
	if !errors.Is(err, ErrPastRetention) || !strings.Contains(err.Error(), "first missing sequence 4") || !strings.Contains(err.Error(), "starts at 11") {
		t.Errorf("replay from 4: err = %v, want the first missing sequence named", err)
	}
	j, err := Replay(ctx, b, boxes, ReplayRequest{Mailbox: mbx, FromSeq: 15})
	if err != nil {
		t.Fatalf("replay within retention: %v", err)
	}
	if j.Replay.FromSeq != 15 || j.Replay.UntilSeq != 20 {
		t.Errorf("replay job = %+v, want sequences 15 to 20", j.Replay)
	}
	if _, err := Replay(ctx, b, boxes, ReplayRequest{Mailbox: "stranger@old.example"}); err == nil {
		t.Error("replay of a mailbox outside the inventory accepted")
	}
}
