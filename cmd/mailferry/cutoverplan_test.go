package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/plan"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
)

// planSeed is what the plan tests put in the source: per mailbox, its
// folders ('/'-separated, nested and non-ASCII) and how many messages
// each gets. Parents of nested folders are not selectable in Dovecot's
// LAYOUT=fs unless seeded themselves; INBOX always is.
var planSeed = map[string]map[string]int{
	"a1@acme.test":  {"INBOX": 3, "Archive/2010/Q1": 2, "Entwürfe": 1},
	"a2@acme.test":  {"日本語/メール": 4},
	"b1@beta.test":  {"INBOX": 5, "Sent Items": 2, "Archive/2010": 1, "Archive/2010/Q1": 1},
	"c1@gamma.test": {"INBOX": 1},
}

// planWorld is a source Dovecot holding planSeed and what the plan must
// find in each mailbox.
type planWorld struct {
	src  *dovecottest.Server
	dir  string
	want map[string]plan.Mailbox
}

// startPlanWorld starts a source Dovecot (extra appended to its
// configuration) and seeds it with planSeed.
func startPlanWorld(t *testing.T, extra string) *planWorld {
	t.Helper()
	dovecottest.Require(t)
	users := map[string]string{}
	for u := range planSeed {
		users[u] = "pw-" + u
	}
	w := &planWorld{dir: t.TempDir(), want: map[string]plan.Mailbox{}}
	w.src = dovecottest.StartT(t, dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: e2etest.MasterPassword,
		Users: users, PlainPasswords: true, ExtraConfig: extra})
	rng := rand.New(rand.NewPCG(7, 11))
	for _, u := range slices.Sorted(maps.Keys(planSeed)) {
		m := plan.Mailbox{Mailbox: u}
		folders := planSeed[u]
		if _, ok := folders["INBOX"]; !ok {
			m.Folders++ // INBOX exists, empty
		}
		for _, f := range slices.Sorted(maps.Keys(folders)) {
			msgs := e2etest.Generated(rng, folders[f], u+"/"+f)
			if err := w.src.Seed(u, f, msgs); err != nil {
				t.Fatal(err)
			}
			m.Folders++
			m.Messages += int64(len(msgs))
			for _, msg := range msgs {
				m.Bytes += int64(len(msg.Body))
			}
		}
		w.want[u] = m
		if err := os.WriteFile(filepath.Join(w.dir, "pw-"+u), []byte("pw-"+u+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(w.dir, "master.pw"), []byte(e2etest.MasterPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// planConfig is how a test configures the plan.
type planConfig struct {
	// address is the source's (default: the world's Dovecot).
	address string
	// userAuth logs in with each mailbox's password file instead of
	// the master user; wrongPassword gets a wrong one.
	userAuth      bool
	wrongPassword string
	// dns is the dns section's body, indented; empty leaves it out.
	dns string
	// natsDir is nats.data_dir (default: a fresh directory); natsListen
	// and natsURL are nats.listen and nats.url.
	natsDir, natsListen, natsURL string
}

// config writes the configuration and the inventory (in a mixed-case
// order, one domain spelt in capitals) and returns the file's path.
func (w *planWorld) config(t *testing.T, pc planConfig) string {
	t.Helper()
	dir := t.TempDir()
	if pc.address == "" {
		pc.address = w.src.Addr
	}
	if pc.natsDir == "" {
		pc.natsDir = filepath.Join(dir, "nats")
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user,source_password_file,target_password_file\n")
	for _, u := range []string{"c1@gamma.test", "b1@beta.test", "a2@acme.test", "a1@ACME.test"} {
		pw := filepath.Join(w.dir, "pw-"+strings.ToLower(u))
		if strings.EqualFold(u, pc.wrongPassword) {
			pw = filepath.Join(dir, "wrong.pw")
			if err := os.WriteFile(pw, []byte("not-the-password\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", u, u, pw, pw)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := "auth: master\n  master_user: admin\n  master_password_file: " + filepath.Join(w.dir, "master.pw")
	if pc.userAuth {
		auth = "auth: user"
	}
	yaml := fmt.Sprintf(`nats:
  data_dir: %s
  listen: %q
  url: %q
source:
  address: %s
  tls: none
  %s
  command_timeout: 20s
  dial_timeout: 5s
target:
  address: 127.0.0.1:1
  tls: none
  %s
mailboxes:
  file: mailboxes.csv
log:
  level: warn
`, pc.natsDir, pc.natsListen, pc.natsURL, pc.address, auth, auth)
	if pc.dns != "" {
		yaml += "dns:\n" + pc.dns
	}
	path := filepath.Join(dir, "mailferry.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cutoverPlanJSON runs `cutover plan -json` and decodes its plan.
func cutoverPlanJSON(t *testing.T, path string) (*plan.Plan, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, "cutover", []string{"plan", "-c", path, "--json"}, &out, &errOut)
	var p plan.Plan
	if jerr := json.Unmarshal(out.Bytes(), &p); jerr != nil {
		t.Fatalf("cutover plan: %v, %v\n%s\n%s", err, jerr, out.String(), errOut.String())
	}
	return &p, out.Bytes(), err
}

// cutoverPlanText runs `cutover plan` and returns what it printed.
func cutoverPlanText(t *testing.T, path string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, "cutover", []string{"plan", "-c", path}, &out, &errOut)
	return out.String(), err
}

// mailboxOf finds a mailbox of the plan.
func mailboxOf(t *testing.T, p *plan.Plan, domain, mailbox string) plan.Mailbox {
	t.Helper()
	d := domainOfPlan(t, p, domain)
	for _, m := range d.Mailboxes {
		if strings.EqualFold(m.Mailbox, mailbox) {
			return m
		}
	}
	t.Fatalf("domain %s has no mailbox %s: %+v", domain, mailbox, d.Mailboxes)
	return plan.Mailbox{}
}

func domainOfPlan(t *testing.T, p *plan.Plan, domain string) plan.Domain {
	t.Helper()
	for _, d := range p.Domains {
		if d.Domain == domain {
			return d
		}
	}
	t.Fatalf("plan has no domain %s: %+v", domain, p.Domains)
	return plan.Domain{}
}

// recorder forwards TCP connections to a server and keeps what clients
// sent, to prove which IMAP commands they used.
type recorder struct {
	mu   sync.Mutex
	sent bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent.Write(b)
}

// commands are the command names the clients sent (the second word of
// each line that has one).
func (r *recorder) commands() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, l := range strings.Split(r.sent.String(), "\r\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			out[strings.ToUpper(f[1])]++
		}
	}
	return out
}

func recordingProxy(t *testing.T, target string) (string, *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rec := &recorder{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(c, s); c.Close() }()
				_, _ = io.Copy(io.MultiWriter(s, rec), c)
			}()
		}
	}()
	return ln.Addr().String(), rec
}

// planZones are the BIND zones of the DNS tests: acme.test's mail is at
// the legacy provider, beta.test's elsewhere; gamma.test is not served.
func planDNS(t *testing.T) string {
	t.Helper()
	bindtest.Require(t)
	c := bindtest.StartT(t, bindtest.Options{NoSecondary: true, Zones: append(zonegen.Support(),
		zonegen.Zone("acme.test.", zonegen.LegacyByAddress, 1), zonegen.Zone("beta.test.", zonegen.External, 2))})
	return fmt.Sprintf(`  server: %q
  tsig_key_file: %q
  verify_ns: false
  legacy_mail_hosts: [%s, %q]
  new_mx: ["10 %s", "20 %s"]
  mail_host_a: %s
  spf: {replace: %q, with: %q}
`, c.Primary.Addr, c.KeyFile, zonegen.LegacyIP, zonegen.OldNamePattern, zonegen.NewMX1, zonegen.NewMX2, zonegen.NewIP, zonegen.SPFOld, zonegen.SPFNew)
}

func TestCutoverPlan(t *testing.T) {
	w := startPlanWorld(t, "")

	t.Run("counts every folder and message and byte per domain with LIST and STATUS only", func(t *testing.T) {
		addr, rec := recordingProxy(t, w.src.Addr)
		p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{address: addr}))
		if err != nil {
			t.Fatalf("cutover plan: %v", err)
		}
		var names []string
		for _, d := range p.Domains {
			names = append(names, d.Domain)
		}
		if !slices.Equal(names, []string{"acme.test", "beta.test", "gamma.test"}) {
			t.Fatalf("domains %v; want acme.test, beta.test, gamma.test (lower case, by name)", names)
		}
		var total plan.Totals
		for u, want := range w.want {
			domain := campaign.DomainOf(u)
			got := mailboxOf(t, p, domain, u)
			got.Mailbox = strings.ToLower(got.Mailbox)
			if got != want {
				t.Errorf("%s: got %+v, want %+v (seeded)", u, got, want)
			}
			total.Mailboxes++
			total.Folders += want.Folders
			total.Messages += want.Messages
			total.Bytes += want.Bytes
		}
		acme := domainOfPlan(t, p, "acme.test")
		wa1, wa2 := w.want["a1@acme.test"], w.want["a2@acme.test"]
		if acme.Messages != wa1.Messages+wa2.Messages || acme.Bytes != wa1.Bytes+wa2.Bytes || acme.Folders != wa1.Folders+wa2.Folders {
			t.Errorf("acme.test sums %d folders, %d messages, %d bytes; want its two mailboxes' %d, %d, %d",
				acme.Folders, acme.Messages, acme.Bytes, wa1.Folders+wa2.Folders, wa1.Messages+wa2.Messages, wa1.Bytes+wa2.Bytes)
		}
		if p.Totals.Mailboxes != total.Mailboxes || p.Totals.Folders != total.Folders || p.Totals.Messages != total.Messages ||
			p.Totals.Bytes != total.Bytes || p.Totals.Domains != 3 || p.Totals.BytesEstimated {
			t.Errorf("totals %+v; want %+v over 3 domains, exact bytes", p.Totals, total)
		}
		if p.Throughput.Source != plan.SourceDefault || p.Throughput.BytesPerSecond != plan.DefaultBytesPerSecond {
			t.Errorf("throughput %+v; want the default (nothing ran)", p.Throughput)
		}
		wantSecs := max(float64(total.Bytes)/plan.DefaultBytesPerSecond, float64(total.Messages)/plan.DefaultMessagesPerSecond)
		if diff := p.Totals.EstimateSeconds - wantSecs; diff < -0.5 || diff > 0.5 {
			t.Errorf("estimated %v s; want %v", p.Totals.EstimateSeconds, wantSecs)
		}
		for _, d := range p.Domains {
			if d.DNS.Action != plan.ActionNone || d.DNS.Line() != "not switched: no dns section in the configuration" {
				t.Errorf("%s: dns %+v (%q); want not switched for want of a dns section", d.Domain, d.DNS, d.DNS.Line())
			}
		}
		cmds := rec.commands()
		for _, bad := range []string{"FETCH", "UID", "SELECT", "EXAMINE", "SEARCH"} {
			if cmds[bad] > 0 {
				t.Errorf("the plan sent %s %d times; commands %v", bad, cmds[bad], cmds)
			}
		}
		if cmds["STATUS"] != total.Folders || cmds["LIST"] != total.Mailboxes {
			t.Errorf("commands %v; want one LIST per mailbox (%d) and one STATUS per folder (%d)", cmds, total.Mailboxes, total.Folders)
		}
	})

	t.Run("json has the documented shape", func(t *testing.T) {
		_, raw, err := cutoverPlanJSON(t, w.config(t, planConfig{}))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Domains []map[string]json.RawMessage `json:"domains"`
			Totals  map[string]json.RawMessage   `json:"totals"`
			Through map[string]json.RawMessage   `json:"throughput"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Domains) != 3 {
			t.Fatalf("%d domains in %s", len(doc.Domains), raw)
		}
		for _, k := range []string{"domain", "mailboxes", "messages", "bytes", "estimate_seconds", "dns"} {
			if _, ok := doc.Domains[0][k]; !ok {
				t.Errorf("domain without %q: %s", k, raw)
			}
		}
		var boxes []map[string]json.RawMessage
		if err := json.Unmarshal(doc.Domains[0]["mailboxes"], &boxes); err != nil || len(boxes) == 0 {
			t.Fatalf("mailboxes %s: %v", doc.Domains[0]["mailboxes"], err)
		}
		for _, k := range []string{"mailbox", "folders", "messages", "bytes"} {
			if _, ok := boxes[0][k]; !ok {
				t.Errorf("mailbox without %q: %s", k, raw)
			}
		}
		var dns map[string]json.RawMessage
		if err := json.Unmarshal(doc.Domains[0]["dns"], &dns); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"action", "skip_code", "skip_reason"} {
			if _, ok := dns[k]; !ok {
				t.Errorf("dns without %q: %s", k, doc.Domains[0]["dns"])
			}
		}
		for _, k := range []string{"domains", "mailboxes", "messages", "bytes", "estimate_seconds"} {
			if _, ok := doc.Totals[k]; !ok {
				t.Errorf("totals without %q: %s", k, raw)
			}
		}
		for _, k := range []string{"bytes_per_second", "messages_per_second", "source", "note"} {
			if _, ok := doc.Through[k]; !ok {
				t.Errorf("throughput without %q: %s", k, raw)
			}
		}
	})

	t.Run("dns shows the switch of a legacy domain and why the others are skipped", func(t *testing.T) {
		p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{dns: planDNS(t)}))
		if err != nil {
			t.Fatal(err)
		}
		acme := domainOfPlan(t, p, "acme.test").DNS
		if acme.Action != plan.ActionSwitch || !slices.Contains(acme.Changes, "- acme.test. 3600 IN MX 10 mail.acme.test.") ||
			!slices.Contains(acme.Changes, "+ acme.test. 3600 IN MX 10 mx1.newmail.test.") {
			t.Errorf("acme.test dns %+v; want its MX switched to the new provider", acme)
		}
		if beta := domainOfPlan(t, p, "beta.test").DNS; beta.Action != plan.ActionSkip || beta.SkipCode != "external" ||
			!strings.Contains(beta.SkipReason, "hosted elsewhere") {
			t.Errorf("beta.test dns %+v; want skipped: external, mail hosted elsewhere", beta)
		}
		if gamma := domainOfPlan(t, p, "gamma.test").DNS; gamma.Action != plan.ActionSkip || gamma.SkipCode == "" || gamma.SkipReason == "" {
			t.Errorf("gamma.test dns %+v; want skipped with dnsctl's code and reason (not served)", gamma)
		}
		if p.Totals.ToSwitch != 1 {
			t.Errorf("%d domains to switch; want 1", p.Totals.ToSwitch)
		}
		text, err := cutoverPlanText(t, w.config(t, planConfig{dns: planDNS(t), wrongPassword: "b1@beta.test", userAuth: true}))
		if !errors.Is(err, command.ErrFailures) {
			t.Fatalf("err %v; want failures (b1@beta.test not read)", err)
		}
		t.Logf("plan:\n%s", text)
		for _, want := range []string{"dns: switch (serial", "    + acme.test. 3600 IN MX 10 mx1.newmail.test.", "dns: skipped (external): mail is hosted elsewhere"} {
			if !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
	})

	t.Run("a wrong password names that mailbox and plans the others and exits 1", func(t *testing.T) {
		p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{userAuth: true, wrongPassword: "b1@beta.test"}))
		if !errors.Is(err, command.ErrFailures) {
			t.Fatalf("err %v; want failures (exit 1)", err)
		}
		b1 := mailboxOf(t, p, "beta.test", "b1@beta.test")
		if !strings.Contains(b1.Error, "b1@beta.test") || !strings.Contains(b1.Error, "log in") {
			t.Errorf("b1: %+v; want the refused login named", b1)
		}
		for _, u := range []string{"a1@acme.test", "a2@acme.test", "c1@gamma.test"} {
			got := mailboxOf(t, p, campaign.DomainOf(u), u)
			got.Mailbox = strings.ToLower(got.Mailbox)
			if got != w.want[u] {
				t.Errorf("%s: %+v; want %+v", u, got, w.want[u])
			}
		}
		if p.Totals.Failed != 1 || domainOfPlan(t, p, "beta.test").Failed != 1 {
			t.Errorf("totals %+v; want 1 failed, in beta.test", p.Totals)
		}
		text, _ := cutoverPlanText(t, w.config(t, planConfig{userAuth: true, wrongPassword: "b1@beta.test"}))
		if !strings.Contains(text, "b1@beta.test not read: ") || !strings.Contains(text, "(1 not read)") {
			t.Errorf("text does not name b1@beta.test as not read:\n%s", text)
		}
	})

	t.Run("a dead source names every mailbox with the error and exits 1", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{address: dead}))
		if !errors.Is(err, command.ErrFailures) {
			t.Fatalf("err %v; want failures (exit 1)", err)
		}
		if len(p.Failed()) != 4 || p.Totals.Failed != 4 {
			t.Fatalf("%d failed; want all 4: %+v", len(p.Failed()), p.Domains)
		}
		for _, m := range p.Failed() {
			if !strings.Contains(m.Error, dead) {
				t.Errorf("%s: error %q does not name the server %s", m.Mailbox, m.Error, dead)
			}
		}
	})

	// checkCampaign checks the plan shows seedCampaign's campaign and
	// throughput.
	checkCampaign := func(t *testing.T, p *plan.Plan) {
		t.Helper()
		if ph := domainOfPlan(t, p, "acme.test").Phase; ph != "paused in prestaging: operator asked" {
			t.Errorf("acme.test phase %q; want the campaign's", ph)
		}
		if ph := domainOfPlan(t, p, "beta.test").Phase; ph != "" {
			t.Errorf("beta.test phase %q; want none (not in the campaign)", ph)
		}
		th := p.Throughput
		// Two passes of 50 MB ran side by side from 0 s to 10 s and 5 s
		// to 15 s, one of 20 MB from 20 s to 25 s: 120 MB in 20 s busy,
		// 25 s summed over the passes.
		if th.Source != plan.SourceMeasured || th.Passes != 3 || th.Seconds != 20 || th.BytesPerSecond != 6e6 || th.MessagesPerSecond != 60 ||
			th.MailboxBytesPerSecond != 4.8e6 || th.MeanMessageBytes != 1e5 {
			t.Errorf("throughput %+v; want 6 MB/s and 60 messages/s measured over 3 passes in 20 s, 4.8 MB/s per mailbox", th)
		}
	}

	t.Run("an embedded broker's campaign phases and measured throughput are shown", func(t *testing.T) {
		path := w.config(t, planConfig{natsDir: filepath.Join(t.TempDir(), "nats")})
		seedCampaign(t, path).Close()
		p, _, err := cutoverPlanJSON(t, path)
		if err != nil {
			t.Fatal(err)
		}
		checkCampaign(t, p)
	})

	t.Run("a broker serving nats.listen is read as a client", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listen := ln.Addr().String()
		ln.Close()
		path := w.config(t, planConfig{natsDir: filepath.Join(t.TempDir(), "nats"), natsListen: listen})
		b := seedCampaign(t, path)
		defer b.Close()
		p, _, err := cutoverPlanJSON(t, path)
		if err != nil {
			t.Fatal(err)
		}
		checkCampaign(t, p)
	})

	t.Run("an unreachable broker is a note and the plan goes on", func(t *testing.T) {
		p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{natsURL: "nats://127.0.0.1:1"}))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "campaign phases and measured throughput not read") ||
			p.Throughput.Source != plan.SourceDefault || p.Totals.Messages == 0 {
			t.Errorf("notes %q, throughput %+v, totals %+v; want a note, the default and the mail counted", p.Notes, p.Throughput, p.Totals)
		}
	})
}

// seedCampaign puts a campaign record for acme.test (paused in
// prestaging) and three loaded passes on the broker of the file at path,
// and returns the broker, open.
func seedCampaign(t *testing.T, path string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := campaign.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d, err := campaign.NewDomain("acme.test", []string{"a1@acme.test", "a2@acme.test"}, nil, "", 0, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	d.Phase, d.Stopped, d.Reason = campaign.Paused, campaign.Prestaging, "operator asked"
	if _, _, err := st.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	pub := func(o event.Outgoing, at time.Duration) {
		e, err := o.Envelope("test", t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.JS.Publish(ctx, o.Subject(), raw); err != nil {
			t.Fatal(err)
		}
	}
	pub(event.Queued("x@old.test", "p1"), 0)
	pub(event.Extracting("x@old.test", "p1"), 0)
	pub(event.Queued("y@old.test", "p1"), 0)
	pub(event.Extracting("y@old.test", "p1"), 5*time.Second)
	pub(event.Loaded("x@old.test", event.LoadedData{Pass: "p1", Appended: 500, Bytes: 50e6}), 10*time.Second)
	pub(event.Loaded("y@old.test", event.LoadedData{Pass: "p1", Appended: 500, Bytes: 50e6}), 15*time.Second)
	pub(event.Queued("x@old.test", "p2"), 20*time.Second)
	pub(event.Loaded("x@old.test", event.LoadedData{Pass: "p2", Appended: 200, Bytes: 20e6}), 25*time.Second)
	// A delta pass that moved nothing measures no throughput.
	pub(event.Queued("y@old.test", "p3"), 30*time.Second)
	pub(event.Loaded("y@old.test", event.LoadedData{Pass: "p3"}), 90*time.Second)
	return b
}

func TestCutoverPlanEstimatesBytesWhenTheSourceHasNoStatusSize(t *testing.T) {
	// Dovecot 2.3 advertises STATUS=SIZE; this one is told not to.
	w := startPlanWorld(t, "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ NAMESPACE UIDPLUS CHILDREN LIST-EXTENDED SPECIAL-USE")
	p, _, err := cutoverPlanJSON(t, w.config(t, planConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	for u, want := range w.want {
		got := mailboxOf(t, p, campaign.DomainOf(u), u)
		if !got.BytesEstimated || got.Messages != want.Messages || got.Folders != want.Folders || got.Bytes != want.Messages*plan.DefaultMeanMessageBytes {
			t.Errorf("%s: %+v; want %d folders, %d messages and bytes estimated at %d each", u, got, want.Folders, want.Messages, plan.DefaultMeanMessageBytes)
		}
	}
	if !p.Totals.BytesEstimated || !domainOfPlan(t, p, "acme.test").BytesEstimated {
		t.Errorf("totals %+v: bytes not marked estimated", p.Totals)
	}
	text, err := cutoverPlanText(t, w.config(t, planConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "~ bytes estimated: the source does not report sizes (no STATUS=SIZE)") || !strings.Contains(text, "~") {
		t.Errorf("text does not say the bytes are estimated:\n%s", text)
	}
}

func TestCutoverPlanRefusesABadConfigurationWithExitTwo(t *testing.T) {
	dir := t.TempDir()
	noInventory := filepath.Join(dir, "no-inventory.yaml")
	if err := os.WriteFile(noInventory, []byte("mailboxes: {file: nowhere.csv}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte("source_user,target_user\na@acme.test,a@acme.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDNS := filepath.Join(dir, "bad-dns.yaml")
	if err := os.WriteFile(badDNS, []byte("mailboxes: {file: mailboxes.csv}\ndns: {server: 127.0.0.1:53}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, says string }{
		{noInventory, "mailferry: cutover plan: read mailboxes"},
		{badDNS, "mailferry: cutover plan: dns: tsig_key_file: required"},
	} {
		code, out, errOut := mailferry(t, "cutover", "plan", "-c", tt.path)
		if code != 2 || !strings.HasPrefix(errOut, tt.says) || out != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tt.says)
		}
	}
}
