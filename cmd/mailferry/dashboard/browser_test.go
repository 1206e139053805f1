package dashboard_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mailferry/mailferry/cmd/mailferry/dashboard"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/chromium"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

// hostileFolder would run a script if the page put it in as markup.
const hostileFolder = `<img src=x onerror="document.title='pwned'">`

// seedState puts what a running migration leaves on a broker: one
// mailbox extracting, one failed for good, a dead letter in a folder
// with a hostile name.
func seedState(t *testing.T, ctx context.Context, b *broker.Broker) []job.Mailbox {
	t.Helper()
	boxes := []job.Mailbox{{SourceUser: "anna@example.com", TargetUser: "anna@example.com"},
		{SourceUser: "bert@example.com", TargetUser: "bert@example.com"}}
	ev := event.Publisher{JS: b.JS, Service: "test"}
	for _, o := range []event.Outgoing{
		event.Queued("anna@example.com", "p1"), event.Extracting("anna@example.com", "p1"),
		event.Queued("bert@example.com", "p1"),
		event.Failed("bert@example.com", 5, event.FailedData{Pass: "p1", Phase: event.PhaseExtracting, Reason: "login refused: AUTHENTICATIONFAILED"}),
	} {
		if err := ev.Publish(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	dl, err := json.Marshal(event.DeadLetteredData{ID: "x#1", Mailbox: "anna@example.com", Folder: hostileFolder, UID: 7, Size: 1234,
		Reason: "message too large for the target (APPENDLIMIT)", Time: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subject.Dead("anna@example.com"))
	m.Data = dl
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	return boxes
}

// TestChromiumShowsTheLiveStateWithHostileNamesAsText opens the page in
// headless Chromium with its credentials, lets its event stream fill the
// tables (once), and reads back the DOM: the mailboxes, their phases, the dead
// letter's reason and the failure are there, the hostile folder name is
// text and no script of it ran. A screenshot goes to a temporary
// directory (MAILFERRY_DASHBOARD_SCREENSHOT names a file to keep one).
func TestChromiumShowsTheLiveStateWithHostileNamesAsText(t *testing.T) {
	bin := chromium.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, "nats: {data_dir: "+filepath.Join(dir, "nats")+"}\n", dir)
	boxes := seedState(t, ctx, b)
	base, pw := served(t, ctx, func(ctx context.Context) (*dashboard.View, error) { return dashboard.Read(ctx, b, boxes) })
	// ?once: the page closes its event stream after the first state, so
	// that Chromium's virtual time can run out (an open stream holds it).
	u, err := url.Parse(base + "/?once")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(dashboard.DefaultUser, pw)

	shot := os.Getenv("MAILFERRY_DASHBOARD_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	chrome := func(args ...string) []byte {
		t.Helper()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir(), "--window-size=1280,900",
			"--virtual-time-budget=4000"}, args...)
		out, err := exec.CommandContext(ctx, bin, append(args, u.String())...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return out
	}
	dom := string(chrome("--dump-dom"))
	for _, want := range []string{"anna@example.com", "bert@example.com", "extracting", "failed",
		"login refused: AUTHENTICATIONFAILED", "message too large for the target (APPENDLIMIT)", textInDOM(hostileFolder), ">snapshot<"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q\n%s", want, dom)
		}
	}
	if !strings.Contains(dom, "<title>mailferry migration</title>") {
		t.Errorf("the title changed: a script of the data ran\n%s", dom)
	}
	chrome("--screenshot=" + shot)
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Errorf("no screenshot: %v", err)
	}
	t.Logf("screenshot: %s", shot)
}

// textInDOM is how Chromium's DOM dump writes text: only &, < and >
// escaped.
func textInDOM(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
