package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/proc"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// deployNATS is deploy/nats, the cluster's committed configuration.
const deployNATS = "../../deploy/nats"

// natsNode is one node of a test cluster: a `mailferry nats -config`
// process run from deploy/nats's files, on loopback ports.
type natsNode struct {
	name, conf             string
	client, route, monitor int
	p                      *proc.Process
}

// natsCluster is three nodes made from deploy/nats: node1.conf ..
// node3.conf and cluster.conf as committed, with only the addresses and
// the store directory rewritten, and secrets.conf made by make-secrets.sh.
type natsCluster struct {
	t     *testing.T
	bin   string
	nodes []*natsNode
	// secrets holds what make-secrets.sh made: nats-USER.password for
	// each user of users.conf.
	secrets string
}

func startNATSCluster(ctx context.Context, t *testing.T, bin string) *natsCluster {
	t.Helper()
	// A new cluster whose meta group elected no leader for three minutes
	// happened once (nats-server 2.15.2, a CI simulation on a machine
	// loaded by other work, the nodes up and routed). What the tests
	// examine starts after the cluster is up, so such a cluster is
	// reported and replaced, once.
	for attempt := 1; ; attempt++ {
		c, err := tryNATSCluster(ctx, t, bin, 45*time.Second)
		if err == nil {
			return c
		}
		if attempt == 2 {
			t.Fatal(err)
		}
		t.Logf("a new 3-node cluster did not come up, starting another: %v", err)
		c.stop()
	}
}

// stop stops every node of c.
func (c *natsCluster) stop() {
	for _, n := range c.nodes {
		if n.p != nil {
			_ = n.p.Stop(5 * time.Second)
		}
	}
}

// tryNATSCluster starts a cluster and waits up to wait for every node to
// be ready; the error names the first that is not and how the others are.
func tryNATSCluster(ctx context.Context, t *testing.T, bin string, wait time.Duration) (*natsCluster, error) {
	t.Helper()
	c := &natsCluster{t: t, bin: bin}
	dir := t.TempDir()
	for i := range 3 {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("nats%d", i+1),
			client: freeTCPPort(t), route: freeTCPPort(t), monitor: freeTCPPort(t)})
	}
	var routes []string
	for _, n := range c.nodes {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", n.route))
	}
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(deployNATS, "make-secrets.sh"), append([]string{secrets}, routes...)...).CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	c.secrets = secrets
	shared := readFile(t, filepath.Join(deployNATS, "cluster.conf"))
	for i, n := range c.nodes {
		nd := filepath.Join(dir, n.name)
		if err := os.Mkdir(nd, 0o700); err != nil {
			t.Fatal(err)
		}
		conf := rewrite(t, shared, map[string]string{
			"listen: 0.0.0.0:4222":      fmt.Sprintf("listen: 127.0.0.1:%d", n.client),
			"listen: 0.0.0.0:6222":      fmt.Sprintf("listen: 127.0.0.1:%d", n.route),
			"http: 127.0.0.1:8222":      fmt.Sprintf("http: 127.0.0.1:%d", n.monitor),
			`"/var/lib/mailferry-nats"`: fmt.Sprintf("%q", filepath.Join(nd, "store")),
		})
		writeConfig(t, filepath.Join(nd, "cluster.conf"), conf)
		for _, f := range []string{"secrets.conf", "passwords.conf"} {
			writeConfig(t, filepath.Join(nd, f), readFile(t, filepath.Join(secrets, f)))
		}
		writeConfig(t, filepath.Join(nd, "users.conf"), readFile(t, filepath.Join(deployNATS, "users.conf")))
		n.conf = filepath.Join(nd, "node.conf")
		writeConfig(t, n.conf, readFile(t, filepath.Join(deployNATS, fmt.Sprintf("node%d.conf", i+1))))
		c.start(n)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, n := range c.nodes {
		if err := c.waitReady(wctx, n); err != nil {
			var others []string
			for _, o := range c.nodes {
				state := "running"
				select {
				case <-o.p.Exited():
					state = fmt.Sprintf("exited (%v):\n%s", o.p.ExitErr(), o.p.Output())
				default:
				}
				others = append(others, o.name+" "+state)
			}
			return c, fmt.Errorf("%s: %w; nodes: %s", n.name, err, strings.Join(others, "; "))
		}
	}
	return c, nil
}

// rewrite replaces each key of repl in text, which must hold it once.
func rewrite(t *testing.T, text string, repl map[string]string) string {
	t.Helper()
	for old, repl := range repl {
		if strings.Count(text, old) != 1 {
			t.Fatalf("deploy/nats/cluster.conf: want %q once", old)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	return text
}

func (c *natsCluster) start(n *natsNode) {
	c.t.Helper()
	p, err := proc.Start(c.bin, []string{"nats", "-config", n.conf}, proc.Options{Dir: filepath.Dir(n.conf)})
	if err != nil {
		c.t.Fatal(err)
	}
	n.p = p
	c.t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
}

// ready waits until n takes clients and its JetStream is healthy (a meta
// leader elected, its streams current).
func (c *natsCluster) ready(ctx context.Context, n *natsNode) {
	c.t.Helper()
	if err := c.waitReady(ctx, n); err != nil {
		c.t.Fatalf("%s: %v", n.name, err)
	}
}

// waitReady is ready's wait, its error returned.
func (c *natsCluster) waitReady(ctx context.Context, n *natsNode) error {
	return n.p.Ready(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		return getOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
	})
}

func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func (c *natsCluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return strings.Join(u, ",")
}

// password is user's password, as make-secrets.sh made it.
func (c *natsCluster) password(user string) string {
	return strings.TrimSpace(readFile(c.t, c.passwordFile(user)))
}

// passwordFile is the nats.password_file of user.
func (c *natsCluster) passwordFile(user string) string {
	return filepath.Join(c.secrets, "nats-"+user+".password")
}

// signIn is the environment a daemon signs in to the cluster with as
// user, as the units of deploy/systemd give it.
func (c *natsCluster) signIn(user string) []string {
	return []string{"MAILFERRY_NATS_USER=" + user, "MAILFERRY_NATS_PASSWORD_FILE=" + c.passwordFile(user)}
}

func (c *natsCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// metaLeader is the JetStream meta leader, as a live node's monitoring
// endpoint reports it.
func (c *natsCluster) metaLeader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var jsz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	for _, n := range c.nodes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/jsz", n.monitor), nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err == nil && jsz.Meta.Leader != "" {
			return jsz.Meta.Leader, nil
		}
	}
	return "", fmt.Errorf("no node names a meta leader")
}

// streamLeader is the node leading stream's replicas
// ($JS.API.STREAM.INFO's cluster information).
func (c *natsCluster) streamLeader(ctx context.Context, stream string) (string, error) {
	info, err := c.streamInfo(ctx, stream)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", stream)
	}
	if len(info.Cluster.Replicas)+1 != 3 {
		return "", fmt.Errorf("stream %s has %d replicas, want 3", stream, len(info.Cluster.Replicas)+1)
	}
	return info.Cluster.Leader, nil
}

// streamInfo is $JS.API.STREAM.INFO of stream.
func (c *natsCluster) streamInfo(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	// Without a leader the request goes unanswered: ask again rather
	// than wait.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.urls(), nats.UserInfo("operator", c.password("operator")))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// clusterStatus is what the test reads of `status -json`.
type clusterStatus struct {
	Mailboxes []struct {
		Mailbox   string `json:"mailbox"`
		Phase     string `json:"phase"`
		Total     int64  `json:"total"`
		Extracted int64  `json:"extracted"`
		Loaded    int64  `json:"loaded"`
	} `json:"mailboxes"`
}

func readStatus(ctx context.Context, conf string) (*clusterStatus, error) {
	// While the cluster elects leaders a request may go unanswered:
	// ask again rather than wait.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, "status", []string{"-json", "-c", conf}, &out, &syncbuf.Buffer{}); err != nil {
		return nil, err
	}
	var st clusterStatus
	return &st, json.Unmarshal(out.Bytes(), &st)
}

func (st *clusterStatus) counts() (extracted, loaded int64, allLoaded bool) {
	allLoaded = len(st.Mailboxes) > 0
	for _, m := range st.Mailboxes {
		extracted += m.Extracted
		loaded += m.Loaded
		allLoaded = allLoaded && (m.Phase == "verifying" || m.Phase == "done")
	}
	return extracted, loaded, allLoaded
}

// TestMigrationOnAThreeNodeClusterSurvivesKillingALeaderNode runs the
// deployment of deploy/: three `mailferry nats -config` processes from
// deploy/nats's files, the extractor and the loader as daemons with
// nats.replicas 3. Once mail flows, the meta leader (in one case) or the
// mail stream's leader (in the other) is killed with SIGKILL and started
// again on its store: the migration completes and verifies, nothing lost
// and nothing duplicated.
func TestMigrationOnAThreeNodeClusterSurvivesKillingALeaderNode(t *testing.T) {
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, victim := range []string{"meta leader", "mail stream leader"} {
		t.Run(victim, func(t *testing.T) {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			p := e2etest.Start(t, 3, dovecottest.Options{})
			rng := rand.New(rand.NewPCG(13, uint64(len(victim))))
			seeded := map[string]int{}
			for i, u := range p.Users {
				msgs := e2etest.Generated(rng, 200, u)
				for j := range 2 {
					msgs = append(msgs, dovecottest.Message{Body: e2etest.BigMessage(1<<20+i*300_000+j*70_000, fmt.Sprintf("%s big %d", u, j)), Date: e2etest.RandomDate(rng)})
				}
				for k, folder := range []string{"INBOX", "Archive/2019"} {
					part := msgs[k*len(msgs)/2 : (k+1)*len(msgs)/2]
					if err := p.Src.Seed(u, folder, part); err != nil {
						t.Fatal(err)
					}
					seeded[u] += len(part)
				}
			}
			c := startNATSCluster(ctx, t, bin)
			t.Logf("cluster up after %v", time.Since(start).Round(time.Millisecond))
			// The CLI signs in as the operator, each daemon as its own
			// user (deploy/nats/users.conf).
			conf, _ := p.Config(t, filepath.Join(p.Dir, "nats"))
			text := readFile(t, conf)
			natsConf := fmt.Sprintf("nats:\n  url: %s\n  user: operator\n  password_file: %s\n  replicas: 3\n  job_ack_wait: 5s\n",
				c.urls(), c.passwordFile("operator"))
			writeConfig(t, conf, strings.Replace(text, fmt.Sprintf("nats:\n  data_dir: %s\n", filepath.Join(p.Dir, "nats")), natsConf, 1))

			// The daemons run as their units do (Restart=always): one
			// that exits is started again, as systemd would.
			daemons := map[string]*proc.Process{}
			restarts := 0
			keepUp := func() {
				for _, svc := range []string{"extractor", "loader"} {
					if d := daemons[svc]; d != nil {
						select {
						case <-d.Exited():
							restarts++
							t.Logf("%v: the %s exited (%v), started again:\n%s", time.Since(start).Round(time.Millisecond), svc, d.ExitErr(), tail(d.Output(), 3))
						default:
							continue
						}
					}
					d, err := proc.Start(bin, []string{svc, "-c", conf}, proc.Options{Dir: p.Dir, Env: c.signIn(svc)})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = d.Stop(10 * time.Second) })
					daemons[svc] = d
				}
			}
			keepUp()
			defer func() {
				if t.Failed() {
					for svc, d := range daemons {
						t.Logf("%s:\n%s", svc, tail(d.Output(), 30))
					}
					for _, n := range c.nodes {
						t.Logf("%s:\n%s", n.name, tail(n.p.Output(), 30))
					}
				}
			}()
			if out, err := exec.CommandContext(ctx, bin, "enqueue", "-c", conf).CombinedOutput(); err != nil {
				t.Fatalf("enqueue: %v\n%s", err, out)
			}

			// Kill as soon as mail flows: the first records are in the
			// mail stream, most of the mailboxes still to move.
			for {
				info, err := c.streamInfo(ctx, broker.StreamMail)
				if err == nil && info.State.Msgs > 0 {
					break
				}
				keepUp()
				if ctx.Err() != nil {
					t.Fatalf("no mail in %s: %v", broker.StreamMail, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			name, err := c.metaLeader(ctx)
			if victim == "mail stream leader" {
				name, err = c.streamLeader(ctx, broker.StreamMail)
			}
			if err != nil {
				t.Fatal(err)
			}
			n := c.node(name)
			n.p.Kill()
			<-n.p.Exited()
			t.Logf("%v: killed %s (%s)", time.Since(start).Round(time.Millisecond), name, victim)
			if st, err := readStatus(ctx, conf); err == nil {
				extracted, loaded, done := st.counts()
				t.Logf("then: %d extracted, %d loaded", extracted, loaded)
				if done {
					t.Errorf("the migration had ended when the node was killed")
				}
			}
			// The survivors elect another leader while it is down.
			for {
				other, err := c.metaLeader(ctx)
				if victim == "mail stream leader" {
					other, err = c.streamLeader(ctx, broker.StreamMail)
				}
				if err == nil && other != name {
					t.Logf("%v: the %s is now %s", time.Since(start).Round(time.Millisecond), victim, other)
					break
				}
				keepUp()
				if ctx.Err() != nil {
					t.Fatalf("no new %s after %s was killed: %v", victim, name, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			c.start(n)
			c.ready(ctx, n)
			t.Logf("%v: %s restarted", time.Since(start).Round(time.Millisecond), name)
			for {
				if ctx.Err() != nil {
					t.Fatalf("the migration did not complete: %v", ctx.Err())
				}
				st, err := readStatus(ctx, conf)
				if err != nil {
					t.Logf("status: %v", err)
					keepUp()
					continue
				}
				if extracted, loaded, done := st.counts(); done {
					t.Logf("%v: every mailbox loaded (%d extracted, %d loaded; %d daemon restarts)", time.Since(start).Round(time.Millisecond), extracted, loaded, restarts)
					break
				}
				keepUp()
				time.Sleep(200 * time.Millisecond)
			}
			var out bytes.Buffer
			if err := run(ctx, "verify", []string{"-c", conf}, &out, &syncbuf.Buffer{}); err != nil {
				t.Fatalf("verify: %v\n%s", err, out.String())
			}
			for u, n := range seeded {
				if !strings.Contains(out.String(), fmt.Sprintf("ok        %s -> %s: %d messages", u, u, n)) {
					t.Errorf("verify does not report %d messages of %s moved:\n%s", n, u, out.String())
				}
			}
			t.Logf("%v: verified", time.Since(start).Round(time.Millisecond))
			// Each daemon did all of its work as its own user.
			for svc, d := range daemons {
				if strings.Contains(d.Output(), "Permissions Violation") {
					t.Errorf("the broker refused the %s something:\n%s", svc, d.Output())
				}
			}
			for _, n := range c.nodes {
				conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.client))
				if err != nil {
					t.Errorf("%s is down at the end: %v", n.name, err)
					continue
				}
				conn.Close()
			}
		})
	}
}

// TestNATSConfigRefusesAServerFileWithoutAuthentication runs `mailferry
// nats -config` on a nats-server file whose clients need no password:
// a configuration error (exit status 2) naming the file and the fix,
// without a mailferry.yaml (-config needs none).
func TestNATSConfigRefusesAServerFileWithoutAuthentication(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "open.conf")
	writeConfig(t, path, "listen: 127.0.0.1:-1\njetstream { store_dir: \""+filepath.Join(dir, "store")+"\" }\n")
	t.Chdir(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, "nats", []string{"-config", path}, &bytes.Buffer{}, &syncbuf.Buffer{})
	var ce *command.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a configuration error", err)
	}
	for _, want := range []string{path, "without authentication", "authorization"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
		t.Errorf("the refused server made its store")
	}
}
