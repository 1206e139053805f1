package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// mailEnable10 are the capabilities MailEnable 10.x advertises.
const mailEnable10 = "IMAP4rev1 IMAP4 CHILDREN IDLE XLIST UIDPLUS SPECIAL-USE AUTH=LOGIN AUTH=CRAM-MD5"

// TestAUserWithoutASourcePasswordIsMigratedAfterSigningIn runs the
// services as deployed (the broker with deploy/nats's users, the auth,
// extractor and loader daemons each as its own user) against a
// MailEnable-like source where bob's AUTH.TAB line has no password:
// status shows him waiting for his user; a wrong current password on the
// change page hands nothing over; 50 sign-ins at once with his legacy
// password (checked at the source, with his source login bob@company)
// hand over one credential and queue one pass, which the extractor runs
// with it; verify logs in with it too and finds the copy whole; his last
// extraction deletes it, and he is no longer waiting. No log holds the
// password.
func TestAUserWithoutASourcePasswordIsMigratedAfterSigningIn(t *testing.T) {
	const bobLegacy = "bob's legacy pw 1"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	u := startUsersBroker(t)
	dir := t.TempDir()
	src := dovecottest.StartT(t, dovecottest.Options{Separator: '/', PlainPasswords: true,
		ExtraConfig: "imap_capability = " + strings.TrimSuffix(mailEnable10, " AUTH=LOGIN AUTH=CRAM-MD5") + "\nauth_mechanisms = plain login cram-md5\n",
		Users:       map[string]string{"alice@company": "Alice's pw 1", "bob@company": bobLegacy}})
	tgt := dovecottest.StartT(t, dovecottest.Options{Separator: '.', PlainPasswords: true, AutoCreateSpecial: true,
		MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: map[string]string{"alice@example.com": "x", "bob@example.com": "y"}})
	msgs := e2etest.Generated(rand.New(rand.NewPCG(15, 2)), 7, "bob")
	if err := src.Seed("bob@company", "INBOX", msgs); err != nil {
		t.Fatal(err)
	}
	if err := src.Seed("bob@company", "Sent Items", msgs[:2]); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		writeConfig(t, p, text)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	authTab := write("AUTH.TAB", "alice\tAlice's pw 1\t\tcompany\r\nbob\t\t\tcompany\r\n", 0o600)
	offices := write("postoffices.txt", "company example.com\n", 0o644)
	write("master.pw", e2etest.MasterPassword+"\n", 0o600)
	write("passwd", "", 0o600)
	write("source-credential.key", sourcecred.NewKeyText()+"\n", 0o600)
	web := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	conf := write("mailferry.yaml", fmt.Sprintf(`nats: {url: %s, user: operator, password_file: %s}
source: {address: %s, tls: none, auth: user, credential_key_file: source-credential.key, command_timeout: 20s, max_login_failures: 2}
target: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 20s}
mailboxes: {file: mailboxes.csv}
auth:
  listen: %s
  provider: dovecot
  dovecot: {passwd_file: passwd}
  legacy_imap: {address: %s, tls: none, max_login_failures: 2}
  source_credentials: {key_file: source-credential.key}
  argon2: {time: 1, memory_kib: 1024}
log: {level: info}
`, u.url, u.passwordFile("operator"), src.Addr, tgt.Addr, web, src.Addr), 0o600)

	if out, err := cli(t, ctx, "users", "import-mailenable", "-c", conf, "-auth-tab", authTab, "-postoffice-map", offices); err != nil || !strings.Contains(out, "needs sign-in  bob@example.com") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	var daemons []*proc.Process
	for _, svc := range []string{"extractor", "loader", "auth"} {
		p, err := proc.Start(bin, []string{svc, "-c", conf}, proc.Options{Dir: dir,
			Env: []string{"MAILFERRY_NATS_USER=" + svc, "MAILFERRY_NATS_PASSWORD_FILE=" + u.passwordFile(svc)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
		daemons = append(daemons, p)
	}
	op := u.connect(t, "operator", &syncbuf.Buffer{})
	// Ready: the auth service listens, the loader made the jobs stream.
	if err := daemons[2].Ready(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if !strings.Contains(daemons[2].Output(), "auth service listening") {
			return fmt.Errorf("auth not listening yet")
		}
		_, err := op.JS.Stream(ctx, broker.StreamJobs)
		return err
	}); err != nil {
		t.Fatalf("%v\nauth:\n%s\nloader:\n%s", err, daemons[2].Output(), daemons[1].Output())
	}
	statusOf := func() *status.Status {
		t.Helper()
		out, err := cli(t, ctx, "status", "-c", conf, "-json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		var st status.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -json: %v\n%s", err, out)
		}
		return &st
	}
	if st := statusOf(); !slices.Equal(st.WaitingForUser, []string{"bob@company"}) {
		t.Fatalf("waiting for their user before the sign-in: %q, want bob@company", st.WaitingForUser)
	}
	if out, _ := cli(t, ctx, "status", "-c", conf); !strings.Contains(out, "waiting for their user: 1 (bob@company)") {
		t.Errorf("status does not say bob waits for his user:\n%s", out)
	}

	post := func(path, body string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+web+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	change := func(current string) string {
		b, _ := json.Marshal(map[string]string{"email": "bob@example.com", "current_password": current, "new_password": "New-Passw0rd!x"})
		return string(b)
	}
	// The refusal counts in bob@company's refused source logins, which
	// the sign-ins and the migration share: with the default
	// max_login_failures (1) neither would log in as bob for an hour
	// after it; this file allows 2.
	if code := post("/api/v1/password", change("not his password")); code/100 != 4 {
		t.Errorf("a wrong current password: %d, want a refusal", code)
	}
	kv, err := op.JS.KeyValue(ctx, broker.BucketSourceCredentials)
	if err != nil {
		t.Fatalf("the auth service did not declare the credentials bucket: %v", err)
	}
	if has, err := sourcecred.Has(ctx, kv, "bob@company"); err != nil || has {
		t.Fatalf("a wrong password handed a credential over: %v %v", has, err)
	}

	login, _ := json.Marshal(map[string]string{"email": "bob@example.com", "password": bobLegacy})
	codes := make([]int, 50)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = post("/api/v1/login", string(login))
		}()
	}
	wg.Wait()
	if !slices.Contains(codes, http.StatusOK) {
		t.Fatalf("no sign-in of 50 succeeded: %v\n%s", codes, daemons[2].Output())
	}
	if has, err := sourcecred.Has(ctx, kv, "bob@company"); err != nil || !has {
		t.Fatalf("no credential after the sign-ins: %v %v\n%s", has, err, daemons[2].Output())
	}
	jobs, err := op.JS.Stream(ctx, broker.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := jobs.Info(ctx, jetstream.WithSubjectFilter(subject.Job("bob@company")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject.Job("bob@company")]; n != 1 {
		t.Fatalf("%d jobs for bob after 50 sign-ins; want 1", n)
	}

	// The extractor runs the pass the sign-in queued, with the credential.
	waitPhase := func(pass string) *status.Mailbox {
		t.Helper()
		for {
			st := statusOf()
			for _, m := range st.Mailboxes {
				if m.Mailbox == "bob@company" && (pass == "" || m.Pass == pass) && (m.PassPhase == status.PhaseVerifying || m.PassPhase == status.PhaseDone) {
					return &m
				}
				if m.Mailbox == "bob@company" && m.Phase == status.PhaseFailed {
					t.Fatalf("bob failed: %s\nextractor:\n%s", m.Shown(), daemons[0].Output())
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("bob's pass did not load\nextractor:\n%s\nloader:\n%s", daemons[0].Output(), daemons[1].Output())
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	m := waitPhase("")
	if !strings.HasPrefix(m.Pass, "signin-") || m.WaitingForUser || m.Loaded != int64(len(msgs)+2) {
		t.Errorf("bob after his pass: %+v; want the sign-in's pass, %d loaded, not waiting", m, len(msgs)+2)
	}
	counts, err := tgt.MessageCounts(ctx, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if counts["INBOX"] != len(msgs) {
		t.Errorf("bob's target INBOX holds %d messages, want %d (%v)", counts["INBOX"], len(msgs), counts)
	}
	r := verifyJSON(t, ctx, conf)
	for _, mr := range r.Mailboxes {
		if mr.Source == "bob@company" && (!mr.OK || mr.Error != "") {
			t.Errorf("verify of bob: ok %v, error %q", mr.OK, mr.Error)
		}
	}

	// His last extraction (the delta pass after the switch) deletes it.
	bob := job.Mailbox{SourceUser: "bob@company", TargetUser: "bob@example.com"}
	if err := job.Publish(ctx, op.JS, &job.Job{Mailbox: bob, Pass: "delta-example-1", Enqueued: time.Now().UTC(), LastExtraction: true}); err != nil {
		t.Fatal(err)
	}
	waitPhase("delta-example-1")
	for {
		has, err := sourcecred.Has(ctx, kv, "bob@company")
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the credential outlived the last extraction\nextractor:\n%s", daemons[0].Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if st := statusOf(); len(st.WaitingForUser) != 0 {
		t.Errorf("waiting for their user after the migration: %q, want none", st.WaitingForUser)
	}
	for i, p := range daemons {
		if strings.Contains(p.Output(), bobLegacy) {
			t.Errorf("daemon %d logged bob's password", i)
		}
		if strings.Contains(p.Output(), "Permissions Violation") {
			t.Errorf("the broker refused daemon %d something:\n%s", i, p.Output())
		}
	}
	for _, want := range []string{"migration queued", "source credential from the user's sign-in deleted"} {
		if !strings.Contains(daemons[2].Output()+daemons[0].Output(), want) {
			t.Errorf("no log says %q", want)
		}
	}
}
