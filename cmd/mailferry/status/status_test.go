package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func TestStatusShowsWhatALoaderWaitsFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s/nats}\n", dir), dir)
	const mbx, pass = "alice@old.example", "p1"
	ev := event.Publisher{JS: b.JS, Service: "test"}
	if err := ev.Publish(ctx, event.Queued(mbx, pass)); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	p, _ := json.Marshal(event.Progress{Service: "loader", Mailbox: mbx, Pass: pass, Waiting: "lease held by pass p0 until 2026-11-29T10:00:37Z", WaitingSince: since})
	if _, err := b.Progress.Put(ctx, event.ProgressKey("loader", mbx), p); err != nil {
		t.Fatal(err)
	}
	st, err := Read(ctx, b, []job.Mailbox{{SourceUser: mbx, TargetUser: mbx}})
	if err != nil {
		t.Fatal(err)
	}
	m := st.Mailboxes[0]
	if m.Waiting != "loader: lease held by pass p0 until 2026-11-29T10:00:37Z" || !m.WaitingSince.Equal(since) {
		t.Errorf("waiting = %q since %v", m.Waiting, m.WaitingSince)
	}
	var out bytes.Buffer
	st.WriteText(&out)
	if !strings.Contains(out.String(), "    waiting: loader: lease held by pass p0") {
		t.Errorf("the table does not show the wait:\n%s", out.String())
	}
}
