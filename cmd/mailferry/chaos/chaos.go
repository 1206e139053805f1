// Package chaos proves that a migration loses and duplicates nothing while
// its processes are killed: it runs nats-server, the extractor and the
// loader as separate processes between two real Dovecot servers, kill -9s
// one of them at random moments and restarts it, and finally verifies the
// target against the source.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/status"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/corpus"
	"github.com/mailferry/mailferry/shared/dovecottest"
	"github.com/mailferry/mailferry/shared/job"
)

// Options configure a chaos run.
type Options struct {
	// Bin is the mailferry binary the processes run.
	Bin string
	// Work is a directory for servers, data and logs (made 0755).
	Work string
	// Seed drives every random choice: what is killed, when.
	Seed uint64
	// Kills is the least number of kills; the run keeps killing until
	// the migration is done and at least this many happened.
	Kills int
	// Mailboxes and Messages size the generated mail; the shared corpus
	// is added when present.
	Mailboxes, Messages int
	// Out receives one line per kill and a summary.
	Out io.Writer
}

// Report is what a run found.
type Report struct {
	Kills    map[string]int
	Messages int
	Took     time.Duration
	Verify   *verify.Report
	// Problems lists differences other than target-altered line endings.
	Problems []string
}

// OK reports a run with no missing, duplicated or changed message.
func (r *Report) OK() bool { return r.Verify != nil && len(r.Problems) == 0 }

// Run runs one chaos migration.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Kills == 0 {
		o.Kills = 20
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(o.Work, 0o755); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	env, err := setUp(ctx, o, rng)
	if err != nil {
		return nil, err
	}
	defer env.tearDown()
	start := time.Now()
	rep := &Report{Kills: map[string]int{}, Messages: env.messages}
	if err := env.startAll(); err != nil {
		return nil, err
	}
	defer env.stopAll()
	if err := env.enqueue(ctx); err != nil {
		return nil, err
	}
	if err := env.chaos(ctx, rng, o, rep); err != nil {
		return nil, err
	}
	env.stopAll()
	rep.Took = time.Since(start)
	rep.Verify = verify.Mailboxes(ctx, env.direct, env.boxes)
	rep.Problems = problems(rep.Verify)
	fmt.Fprintf(o.Out, "chaos: %d messages, kills %v, took %s, %d problems\n", rep.Messages, rep.Kills, rep.Took.Round(time.Millisecond), len(rep.Problems))
	return rep, nil
}

// problems lists every difference except messages the target stored with
// other line endings (reported as altered; not mailferry's doing).
func problems(r *verify.Report) []string {
	var out []string
	for _, m := range r.Mailboxes {
		if m.Error != "" {
			out = append(out, m.Source+": "+m.Error)
		}
		for _, f := range m.Folders {
			for _, d := range f.Differences {
				if d.Kind != "altered" {
					out = append(out, fmt.Sprintf("%s %s uid %d: %s", m.Source, d.Folder, d.UID, d.Kind))
				}
			}
		}
	}
	return out
}

type env struct {
	o        Options
	src, tgt *dovecottest.Server
	direct   *config.Config
	conf     string
	boxes    []job.Mailbox
	messages int
	nats     *proc
	natsURL  string
	services []*proc
	log      zerolog.Logger
}

func setUp(ctx context.Context, o Options, rng *rand.Rand) (*env, error) {
	e := &env{o: o, log: zerolog.Nop()}
	users := map[string]string{}
	for i := range max(o.Mailboxes, 1) {
		users[fmt.Sprintf("chaos%d@old.example", i+1)] = fmt.Sprintf("pw%d", i)
	}
	var err error
	e.src, err = dovecottest.Start(ctx, filepath.Join(o.Work, "source"), dovecottest.Options{Separator: '/', MasterUser: "admin", MasterPassword: masterPassword, Users: users, PlainPasswords: true})
	if err != nil {
		return nil, fmt.Errorf("source dovecot: %w", err)
	}
	e.tgt, err = dovecottest.Start(ctx, filepath.Join(o.Work, "target"), dovecottest.Options{Separator: '.', MasterUser: "admin", MasterPassword: masterPassword, Users: users, PlainPasswords: true, AutoCreateSpecial: true})
	if err != nil {
		e.src.Stop()
		return nil, fmt.Errorf("target dovecot: %w", err)
	}
	for u := range users {
		e.boxes = append(e.boxes, job.Mailbox{SourceUser: u, TargetUser: u})
	}
	if err := e.seed(rng); err != nil {
		e.tearDown()
		return nil, err
	}
	if err := e.writeConfigs(); err != nil {
		e.tearDown()
		return nil, err
	}
	return e, nil
}

const masterPassword = "chaos-master-Pw1!"

func (e *env) seed(rng *rand.Rand) error {
	folders := []string{"INBOX", "Archive/2010", "Entwürfe", "Sent Items"}
	var files []string
	if fs, err := corpus.Files(); err == nil {
		files = fs
	}
	for i, mb := range e.boxes {
		for fi, folder := range folders {
			var msgs []dovecottest.Message
			for k := range e.o.Messages / len(folders) {
				body := fmt.Sprintf("From: chaos@old.example\r\nSubject: %s %s %d\r\nMessage-ID: <%d.%d.%d@chaos>\r\n\r\n%s\r\n",
					mb.SourceUser, folder, k, i, fi, k, strings.Repeat("chaos body line\r\n", 1+rng.IntN(200)))
				msgs = append(msgs, dovecottest.Message{Body: []byte(body), Flags: flags(rng), Date: time.Unix(946684800+rng.Int64N(700_000_000), 0)})
			}
			for j := fi + i*len(folders); j < len(files); j += len(folders) * len(e.boxes) {
				b, err := os.ReadFile(files[j])
				if err != nil {
					return err
				}
				msgs = append(msgs, dovecottest.Message{Body: b, Flags: flags(rng), Date: time.Unix(946684800+rng.Int64N(700_000_000), 0)})
			}
			if err := e.src.Seed(mb.SourceUser, folder, msgs); err != nil {
				return fmt.Errorf("seed %s %q: %w", mb.SourceUser, folder, err)
			}
			e.messages += len(msgs)
		}
	}
	return nil
}

func flags(rng *rand.Rand) []string {
	var out []string
	for _, f := range []string{`\Seen`, `\Flagged`, `\Answered`, "$Label1"} {
		if rng.IntN(3) == 0 {
			out = append(out, f)
		}
	}
	return out
}

func (e *env) writeConfigs() error {
	dir := e.o.Work
	if err := os.WriteFile(filepath.Join(dir, "master.pw"), []byte(masterPassword+"\n"), 0o600); err != nil {
		return err
	}
	var csv strings.Builder
	csv.WriteString("source_user,target_user\n")
	for _, mb := range e.boxes {
		fmt.Fprintf(&csv, "%s,%s\n", mb.SourceUser, mb.TargetUser)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte(csv.String()), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	common := fmt.Sprintf(`source: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 15s, dial_timeout: 5s}
target: {address: %s, tls: none, auth: master, master_user: admin, master_password_file: master.pw, command_timeout: 15s, dial_timeout: 5s}
mailboxes: {file: mailboxes.csv}
extractor: {checkpoint_every: 25}
loader: {batch_messages: 20, lease_ttl: 3s}
log: {level: info}
`, e.src.Addr, e.tgt.Addr)
	natsConf := fmt.Sprintf("nats: {listen: 127.0.0.1:%d, data_dir: %s, server_name: chaos}\n", port, filepath.Join(dir, "nats"))
	e.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	svcConf := fmt.Sprintf("nats: {url: %s, job_ack_wait: 6s}\n", e.natsURL) + common
	if err := os.WriteFile(filepath.Join(dir, "nats.yaml"), []byte(natsConf), 0o600); err != nil {
		return err
	}
	e.conf = filepath.Join(dir, "services.yaml")
	if err := os.WriteFile(e.conf, []byte(svcConf), 0o600); err != nil {
		return err
	}
	direct := "nats: {data_dir: " + filepath.Join(dir, "unused") + "}\n" + common
	if err := os.WriteFile(filepath.Join(dir, "direct.yaml"), []byte(direct), 0o600); err != nil {
		return err
	}
	e.direct, err = config.Load(filepath.Join(dir, "direct.yaml"))
	if err != nil {
		return err
	}
	e.nats = &proc{name: "nats", bin: e.o.Bin, args: []string{"nats", "-c", filepath.Join(dir, "nats.yaml")}, dir: dir}
	for _, s := range []string{"extractor", "loader"} {
		e.services = append(e.services, &proc{name: s, bin: e.o.Bin, args: []string{s, "-c", e.conf}, dir: dir})
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (e *env) procs() []*proc { return append([]*proc{e.nats}, e.services...) }

func (e *env) startAll() error {
	for _, p := range e.procs() {
		if err := p.start(); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(e.procs()) - 1; i >= 0; i-- {
		e.procs()[i].stop(ctx)
	}
}

func (e *env) tearDown() {
	if e.src != nil {
		e.src.Stop()
	}
	if e.tgt != nil {
		e.tgt.Stop()
	}
}

// enqueue starts the pass, retrying while the server comes up.
func (e *env) enqueue(ctx context.Context) error {
	var last []byte
	for range 60 {
		out, err := exec.CommandContext(ctx, e.o.Bin, "enqueue", "-c", e.conf).CombinedOutput()
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("enqueue: %s", last)
}

// chaos kills and restarts processes at random until the migration is
// done and enough kills happened.
func (e *env) chaos(ctx context.Context, rng *rand.Rand, o Options, rep *Report) error {
	watch, err := broker.Open(ctx, config.NATS{URL: e.natsURL, Replicas: 1}, "chaos-watch", e.log)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer watch.Close()
	kills := 0
	deadline := time.Now().Add(20 * time.Minute)
	for {
		if time.Now().After(deadline) {
			return errors.New("chaos: the migration did not finish in 20 minutes")
		}
		if kills >= o.Kills && e.done(ctx, watch) {
			return nil
		}
		if kills < o.Kills {
			sleep(ctx, time.Duration(200+rng.IntN(1300))*time.Millisecond)
			victim := e.procs()[rng.IntN(3)]
			victim.kill9()
			kills++
			rep.Kills[victim.name]++
			fmt.Fprintf(o.Out, "chaos: kill -9 %s (%d)\n", victim.name, kills)
			sleep(ctx, time.Duration(50+rng.IntN(400))*time.Millisecond)
			if err := victim.start(); err != nil {
				return err
			}
		} else {
			sleep(ctx, time.Second)
		}
		for _, p := range e.procs() {
			if p.exited() {
				fmt.Fprintf(o.Out, "chaos: %s exited by itself, restarting\n", p.name)
				if err := p.start(); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// done reports whether every mailbox's latest pass is loaded.
func (e *env) done(ctx context.Context, b *broker.Broker) bool {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := status.Read(cctx, b, e.boxes)
	if err != nil {
		return false
	}
	return st.Phases[status.PhaseVerifying]+st.Phases[status.PhaseDone] == len(e.boxes)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
