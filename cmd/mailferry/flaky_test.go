package main

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/faultproxy"
)

func TestMigrationThroughFlakyServersCompletesAndVerifies(t *testing.T) {
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(21, 22))
	for _, folder := range []string{"INBOX", "Archive/2010", "Entwürfe"} {
		msgs := e2etest.Generated(rng, 80, folder)
		if folder == "Archive/2010" {
			msgs = append(msgs, dovecottest.Message{Body: e2etest.BigMessage(2<<20, "flaky-2mb"), Date: e2etest.RandomDate(rng)},
				dovecottest.Message{Body: e2etest.BigMessage(700_000, "flaky-700k"), Date: e2etest.RandomDate(rng)})
		}
		if err := p.Src.Seed(p.Users[0], folder, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Src.Seed(p.Users[1], "INBOX", e2etest.Generated(rng, 60, "other")); err != nil {
		t.Fatal(err)
	}
	path, direct := p.Config(t, filepath.Join(p.Dir, "nats"))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	// The old server cuts connections mid-literal, stalls and refuses
	// connects for a while; the new one is down for a while at first and
	// drops connections too.
	src, err := faultproxy.Start(ctx, p.Src.Addr, faultproxy.Faults{
		CutAfter: 120_000, CutProbability: 0.6, StallAfter: 60_000, StallProbability: 0.2,
		RefuseFor: 1500 * time.Millisecond, RefuseAtStart: true,
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tgt, err := faultproxy.Start(ctx, p.Tgt.Addr, faultproxy.Faults{CutAfter: 2_000, CutProbability: 0.8, RefuseFor: 3 * time.Second, RefuseAtStart: true}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	// Checkpoints and batches small enough that faults hit them often.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, "extractor: {checkpoint_every: 20}\nloader: {batch_messages: 25}\n"...)
	flaky, err := config.Parse(raw, filepath.Dir(path), os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	flaky.Source.Address, flaky.Target.Address = src.Addr(), tgt.Addr()
	for _, s := range []*config.IMAP{&flaky.Source, &flaky.Target} {
		s.CommandTimeout, s.DialTimeout = config.Duration(2*time.Second), config.Duration(2*time.Second)
	}

	res, err := migrate.Run(ctx, flaky, e2etest.Logger(t), migrate.Options{NoVerify: true, MaxFailures: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range res.Progress {
		if pr.Phase != migrate.PhaseLoaded {
			t.Errorf("%s ended %s: %s", pr.Mailbox, pr.Phase, pr.LastError)
		}
	}
	ss, ts := src.Stats(), tgt.Stats()
	t.Logf("source proxy: %+v; target proxy: %+v", ss, ts)
	if ss.Cut+ss.Stalled == 0 || ss.Refused == 0 || ts.Cut == 0 || ts.Refused == 0 {
		t.Errorf("faults did not all happen (source %+v, target %+v): the test proves nothing", ss, ts)
	}
	boxes, err := job.ReadInventory(direct.Mailboxes.File)
	if err != nil {
		t.Fatal(err)
	}
	if r := verify.Mailboxes(ctx, direct, boxes); !r.OK {
		t.Errorf("after a flaky migration the target differs: %+v", r)
	}
}
