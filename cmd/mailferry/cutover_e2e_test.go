package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover"
	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// campaignWorld is a hosting company's cutover on the real peers: a source
// and a target Dovecot, a BIND primary and secondary serving the
// customers' zones, and a configuration for a campaign over:
//   - alpha.test (two mailboxes) and beta.test, whose mail the legacy
//     server hosts: switched;
//   - gamma.test, whose MX is elsewhere: copied, its DNS skipped;
//   - with broken, delta.test, whose mailbox does not exist at the source:
//     it fails, the others go on.
type campaignWorld struct {
	src, tgt *dovecottest.Server
	bind     *bindtest.Cluster
	dir      string
	config   string
	// seeded counts the messages put in each source mailbox.
	seeded map[string]int
	boxes  []string
	// targets is the target user of a source mailbox named otherwise (a
	// MailEnable post office's); the others are their own.
	targets map[string]string
}

// target is the target user of source mailbox u.
func (w *campaignWorld) target(u string) string {
	if tu, ok := w.targets[u]; ok {
		return tu
	}
	return u
}

// domainOf is the campaign domain of source mailbox u: its target's.
func (w *campaignWorld) domainOf(u string) string { return campaign.DomainOf(w.target(u)) }

// mailTTL is the TTL of the customers' mail records: a campaign after
// `dns lower-ttl`, so that draining takes seconds.
const mailTTL = 2

func newCampaignWorld(t *testing.T, order campaign.Order, broken bool, natsConf string, withAuth bool) *campaignWorld {
	t.Helper()
	w := &campaignWorld{dir: t.TempDir(), seeded: map[string]int{},
		boxes: []string{"anna@alpha.test", "bob@alpha.test", "carla@beta.test", "gus@gamma.test"}}
	users := map[string]string{}
	for i, u := range w.boxes {
		users[u] = fmt.Sprintf("pw-%d", i)
	}
	w.src = dovecottest.StartT(t, dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: users, PlainPasswords: true})
	w.tgt = dovecottest.StartT(t, dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: e2etest.MasterPassword, Users: users, PlainPasswords: true, AutoCreateSpecial: true})
	rng := rand.New(rand.NewPCG(11, 12))
	for _, u := range w.boxes {
		for _, folder := range []string{"INBOX", "Archive/2019", "Entwürfe"} {
			msgs := e2etest.Generated(rng, 8, u+" "+folder)
			if err := w.src.Seed(u, folder, msgs); err != nil {
				t.Fatal(err)
			}
			w.seeded[u] += len(msgs)
		}
	}
	if broken {
		w.boxes = append(w.boxes, "dora@delta.test")
	}
	zones := []bindtest.Zone{
		lowTTL(zonegen.Zone("alpha.test.", zonegen.LegacyByAddress, 1)),
		lowTTL(zonegen.Zone("beta.test.", zonegen.LegacyByName, 2)),
		lowTTL(zonegen.Zone("gamma.test.", zonegen.External, 3)),
	}
	w.bind = bindtest.StartT(t, bindtest.Options{Zones: append(zonegen.Support(), zones...)})
	extra := ""
	if withAuth {
		// The target's mailboxes are provisioned by the auth service,
		// into the passwd-file the target Dovecot reads.
		extra = fmt.Sprintf("auth: {provider: dovecot, dovecot: {passwd_file: %s}}\n", filepath.Join(w.tgt.Dir, "passwd"))
	}
	w.writeConfig(t, order, natsConf+"\n"+extra)
	return w
}

// lowTTL gives every record of z the campaign's short TTL.
func lowTTL(z bindtest.Zone) bindtest.Zone {
	z.Text = strings.Replace(z.Text, "$TTL 3600", fmt.Sprintf("$TTL %d", mailTTL), 1)
	z.Text = strings.ReplaceAll(z.Text, " 7200 ", " ") // records with a TTL of their own
	return z
}

func (w *campaignWorld) writeConfig(t *testing.T, order campaign.Order, natsConf string) {
	t.Helper()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("master.pw", e2etest.MasterPassword+"\n")
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, u := range w.boxes {
		fmt.Fprintf(&csv, "%s,%s\n", u, w.target(u))
	}
	write("mailboxes.csv", csv.String())
	write("domains.txt", "alpha.test\nbeta.test\ngamma.test\ndelta.test\n")
	if !strings.Contains(natsConf, "nats:") {
		natsConf = "nats: {data_dir: nats}\n" + natsConf
	}
	write("mailferry.yaml", fmt.Sprintf(`%s
source: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 20s}
target: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 20s}
mailboxes: {file: mailboxes.csv}
log: {level: info, format: json}
dns:
  server: %q
  tsig_key_file: %q
  verify_servers: [%q, %q]
  verify_ns: false
  legacy_mail_hosts: [%s, %q]
  new_mx: ["10 %s", "20 %s"]
  mail_host_a: %s
  domains_file: domains.txt
  verify_timeout: 30s
cutover:
  order: %s
  delta_grace: 3s
  tick: 300ms
  lease_ttl: 3s
  retry_after: 1s
  restore_ttl: 7200
`, natsConf, w.src.Addr, w.tgt.Addr, w.bind.Primary.Addr, w.bind.KeyFile, w.bind.Primary.Addr, w.bind.Secondary.Addr,
		zonegen.LegacyIP, zonegen.OldNamePattern, zonegen.NewMX1, zonegen.NewMX2, zonegen.NewIP, order))
	w.config = filepath.Join(w.dir, "mailferry.yaml")
}

// switched reports whether both servers serve domain's new MX.
func (w *campaignWorld) switched(ctx context.Context, domain string) bool {
	for _, s := range w.bind.Servers() {
		rrs, err := w.bind.AXFR(ctx, s, domain)
		if err != nil || !strings.Contains(strings.Join(rrs, "\n"), zonegen.NewMX1) {
			return false
		}
	}
	return true
}

// mxTTL is the TTL of domain's MX records at the primary.
func (w *campaignWorld) mxTTL(ctx context.Context, t *testing.T, domain string) string {
	t.Helper()
	rrs, err := w.bind.AXFR(ctx, w.bind.Primary, domain)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range rrs {
		if f := strings.Fields(rr); len(f) > 3 && f[3] == "MX" {
			return f[1]
		}
	}
	return ""
}

// deliverLate puts a message, dated now, in a mailbox of the old server
// (mail that reached the legacy MX while the domain drained) and one in
// the same mailbox at the new server (mail delivered there after the
// switch).
func (w *campaignWorld) deliverLate(t *testing.T, mailbox string) {
	t.Helper()
	now := time.Now()
	late := dovecottest.Message{Body: []byte(fmt.Sprintf("From: late@sender.test\r\nTo: %s\r\nSubject: via the old MX while draining\r\nMessage-ID: <late.%d@sender.test>\r\nDate: %s\r\n\r\nlate\r\n",
		mailbox, now.UnixNano(), now.Format(time.RFC1123Z))), Date: now}
	if err := w.src.Seed(mailbox, "INBOX", []dovecottest.Message{late}); err != nil {
		t.Fatal(err)
	}
	w.seeded[mailbox]++
	fresh := dovecottest.Message{Body: []byte(fmt.Sprintf("From: new@sender.test\r\nTo: %s\r\nSubject: via the new MX\r\nMessage-ID: <fresh.%d@sender.test>\r\nDate: %s\r\n\r\nfresh\r\n",
		mailbox, now.UnixNano(), now.Format(time.RFC1123Z))), Date: now.Add(time.Second)}
	if err := w.tgt.Seed(mailbox, "INBOX", []dovecottest.Message{fresh}); err != nil {
		t.Fatal(err)
	}
}

// useOldServer is what a user does on the old server between the copy and
// the switch: reads one message (flags it \Seen, removes \Flagged, adds a
// keyword) and deletes another.
func (w *campaignWorld) useOldServer(ctx context.Context, t *testing.T, mailbox string) {
	t.Helper()
	for _, args := range [][]string{
		{"flags", "replace", "-u", mailbox, `\Seen $Customer`, "mailbox", "INBOX", "uid", "1"},
		{"expunge", "-u", mailbox, "mailbox", "INBOX", "uid", "2"},
	} {
		if out, err := w.src.Doveadm(ctx, args...); err != nil {
			t.Fatalf("doveadm %v: %v\n%s", args, err, out)
		}
	}
}

// cli runs a mailferry command in this process.
func (w *campaignWorld) cli(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args[0], append(args[1:], "-c", w.config), &out, &errOut)
	if err != nil {
		t.Logf("mailferry %s: %v\n%s", strings.Join(args, " "), err, tail(errOut.String(), 40))
	}
	return out.String(), err
}

// checkCampaign checks what an operator checks once the campaign ended:
// cutover status (every domain as want, the DNS lines, the messages moved),
// status agreeing, and verify -since-switch clean for the done domains.
func (w *campaignWorld) checkCampaign(ctx context.Context, t *testing.T, want map[string]campaign.Phase) {
	t.Helper()
	out, err := w.cli(ctx, t, "cutover", "status", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var st cutover.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cutover status -json: %v\n%s", err, out)
	}
	if len(st.Domains) != len(want) {
		t.Fatalf("cutover status has %d domains, want %d:\n%s", len(st.Domains), len(want), out)
	}
	for _, d := range st.Domains {
		if d.Phase != want[d.Domain] {
			t.Errorf("%s: %s (%s), want %s", d.Domain, d.Phase, d.Reason, want[d.Domain])
		}
		if d.Phase != campaign.Done {
			continue
		}
		switch d.Domain {
		case "gamma.test":
			if !strings.HasPrefix(d.DNS, "skipped: ") || !strings.Contains(d.DNS, "(external)") {
				t.Errorf("gamma.test dns = %q, want skipped as external", d.DNS)
			}
		default:
			if !strings.HasPrefix(d.DNS, "switched ") || d.TTLRestored != 7200 {
				t.Errorf("%s dns = %q, ttl restored %d; want switched, TTL 7200", d.Domain, d.DNS, d.TTLRestored)
			}
			if got := w.mxTTL(ctx, t, d.Domain); got != "7200" {
				t.Errorf("%s: MX TTL at the primary = %s, want 7200", d.Domain, got)
			}
		}
		for _, m := range d.Mailboxes {
			if m.Messages != int64(w.seeded[m.Mailbox]) || m.Phase != campaign.BoxVerified {
				t.Errorf("%s: %s (pass %s, domain pass %s), %d messages moved; want verified, %d", m.Mailbox, m.Phase, m.Pass, d.Pass, m.Messages, w.seeded[m.Mailbox])
			}
		}
	}
	w.checkStatusAgrees(ctx, t, want)
	var done []string
	for _, u := range w.boxes {
		if want[w.domainOf(u)] == campaign.Done {
			done = append(done, u)
		}
	}
	for _, u := range done {
		if out, err := w.cli(ctx, t, "verify", "-since-switch", "-mailbox", u); err != nil {
			t.Errorf("verify -since-switch -mailbox %s: %v\n%s", u, err, out)
		}
	}
}

// checkStatusAgrees checks that `mailferry status` tells the same story
// as `cutover status`: each domain's phase, and every mailbox of a done
// domain done with all its messages loaded.
func (w *campaignWorld) checkStatusAgrees(ctx context.Context, t *testing.T, want map[string]campaign.Phase) {
	t.Helper()
	out, err := w.cli(ctx, t, "status", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var st status.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if len(st.Domains) != len(want) {
		t.Errorf("status shows %d domains, want %d: %+v", len(st.Domains), len(want), st.Domains)
	}
	for _, d := range st.Domains {
		if campaign.Phase(d.Phase) != want[d.Domain] {
			t.Errorf("status: %s is %s, want %s", d.Domain, d.Phase, want[d.Domain])
		}
	}
	for _, m := range st.Mailboxes {
		if want[w.domainOf(m.Mailbox)] != campaign.Done {
			continue
		}
		if m.Phase != status.PhaseDone || m.Loaded != int64(w.seeded[m.Mailbox]) {
			t.Errorf("status: %s %s, %d loaded; want done, %d", m.Mailbox, m.Shown(), m.Loaded, w.seeded[m.Mailbox])
		}
	}
}

// TestCutoverCampaignAllInOneTakesEveryDomainToDone is the campaign an
// operator runs from the README on one machine: cutover start -all, every
// service in-process, on the real peers. Mail reaching the old server while
// a domain drains arrives at the target; mail delivered to the new server
// after the switch does not fail verification; the domain with its MX
// elsewhere is copied and closed without a switch; the one whose mailbox
// cannot be read fails without holding up the others.
func TestCutoverCampaignAllInOneTakesEveryDomainToDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w := newCampaignWorld(t, campaign.OrderPrestage, true, "", false)
	plan, err := w.cli(ctx, t, "cutover", "plan")
	if err == nil || !strings.Contains(plan, "gamma.test") || !strings.Contains(plan, "external") || !strings.Contains(plan, "dora@delta.test") {
		// delta.test's mailbox cannot be read: the plan names it and exits 1.
		t.Errorf("cutover plan: %v\n%s", err, plan)
	}

	// The late mail comes when alpha.test's switch is visible, i.e.
	// while it drains (TTL 2s + grace 3s).
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil && !w.switched(ctx, "alpha.test") {
			time.Sleep(50 * time.Millisecond)
		}
		if ctx.Err() == nil {
			w.deliverLate(t, "anna@alpha.test")
			w.useOldServer(ctx, t, "bob@alpha.test")
		}
	}()
	out, err := w.cli(ctx, t, "cutover", "start", "-all")
	wg.Wait()
	if err == nil || !strings.Contains(err.Error(), "failed: delta.test") {
		t.Fatalf("cutover start: %v, want delta.test named as failed\n%s", err, out)
	}
	for _, d := range []string{"alpha.test", "beta.test", "gamma.test"} {
		if !strings.Contains(out, d+": done") {
			t.Errorf("start did not say %s is done:\n%s", d, out)
		}
	}
	w.checkCampaign(ctx, t, map[string]campaign.Phase{"alpha.test": campaign.Done, "beta.test": campaign.Done,
		"gamma.test": campaign.Done, "delta.test": campaign.Failed})
	// The customer's report says what the user did on the old server.
	var rep report.Report
	b, err := os.ReadFile(filepath.Join(w.dir, "reports", "alpha.test.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Mailboxes {
		v := m.Verification
		switch {
		case v == nil:
			t.Errorf("report: %s not verified", m.Mailbox)
		case m.Mailbox == "bob@alpha.test" && (v.Resynced != 1 || v.DeletedAtSource != 1 || !v.OK):
			t.Errorf("report: bob %+v, want 1 resynced, 1 deleted at source, ok", *v)
		case m.Mailbox == "anna@alpha.test" && (v.NewAtTarget != 1 || !v.OK):
			t.Errorf("report: anna %+v, want 1 new at target, ok", *v)
		}
	}
	for _, d := range []string{"beta.test", "gamma.test", "delta.test"} {
		if _, err := os.Stat(filepath.Join(w.dir, "reports", d+".html")); err != nil {
			t.Errorf("report of %s: %v", d, err)
		}
	}

	// The old mailboxes of a done domain can be marked closed; a failed
	// domain's cannot.
	if out, err := w.cli(ctx, t, "cutover", "close", "-domain", "alpha.test"); err != nil || !strings.Contains(out, "alpha.test: done") {
		t.Errorf("cutover close alpha.test: %v\n%s", err, out)
	}
	if _, err := w.cli(ctx, t, "cutover", "close", "-domain", "delta.test"); err == nil {
		t.Error("cutover close of a failed domain exited 0")
	}
	st, err := w.cli(ctx, t, "cutover", "status", "-domain", "alpha.test", "-json")
	if err != nil || !strings.Contains(st, `"closed_at"`) {
		t.Errorf("cutover status after close: %v\n%s", err, st)
	}

	// Started again, the campaign is where it was: nothing to do.
	again, err := w.cli(ctx, t, "cutover", "start", "-domain", "alpha.test,beta.test")
	if err != nil || !strings.Contains(again, "alpha.test: in the campaign already") {
		t.Errorf("start again: %v\n%s", err, again)
	}
}

// mailferryBinary builds the mailferry command once per test binary.
var mailferryBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "mailferry-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "mailferry")
	build := exec.Command("go", "build", "-o", out, ".")
	if msg, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, msg)
	}
	return out, nil
})

// daemons runs mailferry's services as processes of their own on one
// nats-server, as ops deploy them.
type daemons struct {
	t   *testing.T
	bin string
	w   *campaignWorld
	// users, when set, is the broker of deploy/nats's users: each daemon
	// signs in as its own.
	users *usersBroker
	all   []*proc.Process
	orch  []*proc.Process
	n     int
	seen  map[campaign.Phase]bool
}

func (d *daemons) start(args ...string) *proc.Process {
	d.t.Helper()
	d.n++
	var env []string
	if d.users != nil {
		user := args[0] // extractor, loader, dnsctl, cutover (run)
		env = []string{"MAILFERRY_NATS_USER=" + user, "MAILFERRY_NATS_PASSWORD_FILE=" + d.users.passwordFile(user)}
	}
	p, err := proc.Start(d.bin, append(args, "-c", d.w.config), proc.Options{Dir: d.w.dir, Env: env})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
	d.all = append(d.all, p)
	return p
}

// moved returns the first "domain moved" the running orchestrators logged
// into a running phase ("" when none did).
func (d *daemons) moved() (domain string, phase campaign.Phase) {
	for _, p := range d.orch {
		for _, line := range strings.Split(p.Output(), "\n") {
			var l struct {
				Message, Domain string
				Phase           campaign.Phase
			}
			if json.Unmarshal([]byte(line), &l) != nil || l.Message != "domain moved" {
				continue
			}
			if l.Phase.Running() && l.Phase != campaign.Queued && !d.seen[l.Phase] {
				d.seen[l.Phase] = true
				return l.Domain, l.Phase
			}
		}
	}
	return "", ""
}

// restartOrchestrators kills every orchestrator with SIGKILL and starts
// two again (one acts, one stands by).
func (d *daemons) restartOrchestrators() {
	for _, p := range d.orch {
		p.Kill()
		<-p.Exited()
	}
	d.orch = []*proc.Process{d.start("cutover", "run"), d.start("cutover", "run")}
}

// TestCutoverCampaignOfSeparateDaemonsSurvivesKillingTheOrchestratorInEveryPhase
// runs the campaign as ops deploy it: nats-server, extractor, loader,
// dnsctl and two orchestrators as processes of their own, the campaign
// handed over by `cutover start`, in the switch_first order. Every time a
// domain reaches a phase no kill has hit yet, every orchestrator is killed
// with SIGKILL and started again; beta.test is paused in the middle and
// resumed once the others are done. Every domain ends as it should.
func TestCutoverCampaignOfSeparateDaemonsSurvivesKillingTheOrchestratorInEveryPhase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The broker has deploy/nats's users: the CLI signs in as the
	// operator, each daemon as its own user.
	u := startUsersBroker(t)
	natsConf := fmt.Sprintf("nats: {url: %s, user: operator, password_file: %s}", u.url, u.passwordFile("operator"))
	w := newCampaignWorld(t, campaign.OrderSwitchFirst, true, natsConf, true)
	d := &daemons{t: t, bin: bin, w: w, users: u, seen: map[campaign.Phase]bool{}}
	// dnsctl starts once an orchestrator was killed in switching: until
	// then every switch request waits for it, as while it is down.
	for _, svc := range []string{"extractor", "loader"} {
		d.start(svc)
	}
	d.restartOrchestrators()
	dnsctlUp := false

	out, err := w.cli(ctx, t, "cutover", "start", "-all")
	if err != nil {
		t.Fatalf("cutover start: %v\n%s", err, out)
	}
	store := openStore(ctx, t, w)
	killedIn := map[campaign.Phase]bool{}
	paused, resumed, late, imported := false, false, false, false
	for {
		if ctx.Err() != nil {
			t.Fatalf("campaign did not end: %v\norchestrator:\n%s", ctx.Err(), tail(d.orch[0].Output(), 30))
		}
		domains, err := store.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		phase := map[string]campaign.Domain{}
		for _, dom := range domains {
			phase[dom.Domain] = dom
		}
		// The acting orchestrator logs each move before it acts on it:
		// the kill lands in the phase, mostly while its action runs.
		if dom, p := d.moved(); p != "" && !killedIn[p] {
			killedIn[p] = true
			t.Logf("%s moved to %s: killing every orchestrator", dom, p)
			d.restartOrchestrators()
		}
		if killedIn[campaign.Switching] && !dnsctlUp {
			d.start("dnsctl")
			dnsctlUp = true
		}
		if !imported && len(domains) == 4 && allIn(domains, campaign.Provisioning) {
			// The campaign was started before the users were imported:
			// every domain waits in provisioning until they are.
			w.importUsers(ctx, t)
			imported = true
		}
		if a := phase["alpha.test"]; !late && a.Phase == campaign.Draining {
			w.deliverLate(t, "anna@alpha.test")
			late = true
		}
		if b := phase["beta.test"]; !paused && b.Phase == campaign.Prestaging {
			fiftyPauses(ctx, t, w)
			paused = true
		}
		othersEnded := phase["alpha.test"].Phase == campaign.Done && phase["gamma.test"].Phase == campaign.Done && phase["delta.test"].Phase == campaign.Failed
		if paused && !resumed && othersEnded {
			if b := phase["beta.test"]; b.Phase != campaign.Paused || b.Reason != "customer asked" {
				t.Errorf("beta.test while paused: %s (%s), want paused", b.Phase, b.Reason)
			}
			if out, err := w.cli(ctx, t, "cutover", "resume", "-domain", "beta.test"); err != nil {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			resumed = true
		}
		if resumed && othersEnded && phase["beta.test"].Phase == campaign.Done && d.finished(phase) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What an operator waiting on the campaign sees: it returns at once,
	// exit 1 naming the failed domain.
	if out, err := w.cli(ctx, t, "cutover", "start", "--all", "--wait"); err == nil || !strings.Contains(err.Error(), "failed: delta.test") ||
		!strings.Contains(out, "alpha.test: done") {
		t.Errorf("cutover start --all --wait after the campaign: %v\n%s", err, out)
	}
	for _, p := range []campaign.Phase{campaign.Provisioning, campaign.Prestaging, campaign.Switching, campaign.Draining, campaign.Delta, campaign.Verifying} {
		if !killedIn[p] {
			t.Errorf("no orchestrator was killed in %s", p)
		}
	}
	if !late {
		t.Error("alpha.test was never seen draining: no late mail delivered")
	}
	w.checkCampaign(ctx, t, map[string]campaign.Phase{"alpha.test": campaign.Done, "beta.test": campaign.Done,
		"gamma.test": campaign.Done, "delta.test": campaign.Failed})
	if d := phaseOf(ctx, t, store, "delta.test"); d.Stopped != campaign.Switching || !strings.Contains(d.Reason, "not_served") {
		t.Errorf("delta.test failed in %s (%s), want in switching, not served", d.Stopped, d.Reason)
	}
	// Each daemon did all of its work as its own broker user.
	for _, p := range d.all {
		if strings.Contains(p.Output(), "Permissions Violation") {
			t.Errorf("the broker refused a daemon something:\n%s", p.Output())
		}
	}
}

// finished reports whether every ended domain has its report and, when
// switched, its TTLs restored.
func (d *daemons) finished(domains map[string]campaign.Domain) bool {
	for _, dom := range domains {
		if dom.After.ReportPhase != dom.Phase || dom.Phase == campaign.Done && dom.DNS.Switched() && dom.After.TTLRestored == 0 {
			return false
		}
	}
	return true
}

func openStore(ctx context.Context, t *testing.T, w *campaignWorld) *campaign.Store {
	t.Helper()
	cfg, err := config.Load(w.config)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Connect(ctx, cfg.NATS, "test", e2etest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if err := b.Use(ctx, campaign.Needs); err != nil {
		t.Fatal(err)
	}
	store, err := campaign.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func phaseOf(ctx context.Context, t *testing.T, store *campaign.Store, domain string) campaign.Domain {
	t.Helper()
	d, _, err := store.Get(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitListening waits until p, a server just started, takes TCP
// connections on port (or exits: then it fails the test).
func waitListening(ctx context.Context, t *testing.T, p *proc.Process, port int) {
	t.Helper()
	if err := p.Ready(ctx, 50*time.Millisecond, func(context.Context) error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func allIn(domains []campaign.Domain, p campaign.Phase) bool {
	for _, d := range domains {
		if d.Phase != p {
			return false
		}
	}
	return true
}

// importUsers imports every mailbox's user for the auth service, as
// email-only users with no legacy hash.
func (w *campaignWorld) importUsers(ctx context.Context, t *testing.T) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("email,role,legacy_hash\n")
	for _, u := range w.boxes {
		fmt.Fprintf(&csv, "%s,email-only,\n", w.target(u))
	}
	path := filepath.Join(w.dir, "users.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := w.cli(ctx, t, "users", "import", "-file", path); err != nil {
		t.Fatalf("users import: %v\n%s", err, out)
	}
}

// fiftyPauses sends the same pause 50 times at once: every command
// succeeds, one changes the record, the others find it paused.
func fiftyPauses(ctx context.Context, t *testing.T, w *campaignWorld) {
	t.Helper()
	outs := make([]string, 50)
	errs := make([]error, 50)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = w.cli(ctx, t, "cutover", "pause", "-domain", "beta.test", "-reason", "customer asked")
		}()
	}
	wg.Wait()
	changed := 0
	for i, out := range outs {
		if errs[i] != nil {
			t.Fatalf("pause %d: %v\n%s", i, errs[i], out)
		}
		switch strings.TrimSpace(out) {
		case "beta.test: paused":
			changed++
		case "beta.test: paused (unchanged)":
		default:
			t.Errorf("pause %d said %q", i, out)
		}
	}
	if changed != 1 {
		t.Errorf("%d of 50 concurrent pauses changed the record, want 1", changed)
	}
}

// TestCutoverStartKilledAtRandomMomentsResumesWhereItWas kills the whole
// all-in-one `cutover start` process (embedded broker, every service,
// the orchestrator) with SIGKILL at random moments, six times in a row,
// and runs it again each time: the last run ends the campaign as an
// uninterrupted one would.
func TestCutoverStartKilledAtRandomMomentsResumesWhereItWas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	w := newCampaignWorld(t, campaign.OrderPrestage, true, "", false)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 6 {
		p, err := proc.Start(bin, []string{"cutover", "start", "-all", "-c", w.config}, proc.Options{Dir: w.dir})
		if err != nil {
			t.Fatal(err)
		}
		after := time.Duration(200+rng.IntN(1800)) * time.Millisecond
		select {
		case <-p.Exited():
			t.Logf("run %d ended by itself before its kill: %v", i+1, p.ExitErr())
		case <-time.After(after):
			p.Kill()
			<-p.Exited()
			t.Logf("run %d killed after %s: %s", i+1, after, lastLine(p.Output()))
		}

	}
	var out, errOut bytes.Buffer
	err = run(ctx, "cutover", []string{"start", "-all", "-c", w.config}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "failed: delta.test") {
		t.Fatalf("the last cutover start: %v, want delta.test named as failed\n%s\n%s", err, out.String(), errOut.String())
	}

	began := time.Now()
	if _, err := w.cli(ctx, t, "cutover", "start", "-all"); err == nil {
		t.Fatal("cutover start of an ended campaign exited 0 with delta.test failed")
	}
	t.Logf("cutover start of an ended campaign took %s", time.Since(began))
	w.checkCampaign(ctx, t, map[string]campaign.Phase{"alpha.test": campaign.Done, "beta.test": campaign.Done,
		"gamma.test": campaign.Done, "delta.test": campaign.Failed})
}

// lastLine is the last "domain moved" line of a run's log, to say where
// it was killed.
func lastLine(out string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"domain moved"`) {
			return lines[i]
		}
	}
	return "(no domain moved yet)"
}
