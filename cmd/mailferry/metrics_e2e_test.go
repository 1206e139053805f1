package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
	"github.com/mailferry/mailferry/shared/testenv/e2etest"
	"github.com/mailferry/mailferry/shared/testenv/proc"
)

// promtool is Prometheus's checker (Debian's prometheus package), or the
// test fails under CI=true and is skipped elsewhere.
func promtool(t *testing.T) string {
	t.Helper()
	proc.Require(t, proc.Missing("", proc.Need{Bin: "promtool", Package: "prometheus"}))
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// scrape fetches url and returns the status and body.
func scrape(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(metricsUser, metricsPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The daemons' metrics credentials.
const (
	metricsUser     = "prometheus"
	metricsPassword = "a-scrape-password"
)

// sample reads the value of the series named by its text (name and
// labels as printed) from a scrape; -1 when absent.
func sample(body, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	var v float64
	if _, err := fmt.Sscan(m[1], &v); err != nil {
		return -1
	}
	return v
}

// TestDaemonsServeMetricsThatPromtoolAcceptsAfterARealMigration runs the
// extractor and the loader as daemons on a nats-server of their own
// between two Dovecots, each with a metrics listener, migrates two
// mailboxes, and checks what the daemons serve: /metrics passes `promtool
// check metrics` and counts what moved (messages, bytes, IMAP commands by
// server and command, consumer lag), /healthz answers, and /readyz is 200
// while the broker is up and 503 once it is down.
func TestDaemonsServeMetricsThatPromtoolAcceptsAfterARealMigration(t *testing.T) {
	tool := promtool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := mailferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := e2etest.Start(t, 2, dovecottest.Options{})
	rng := rand.New(rand.NewPCG(13, 3))
	var want int
	var wantBytes int
	for i, u := range p.Users {
		msgs := e2etest.Generated(rng, 6+3*i, u)
		if err := p.Src.Seed(u, "INBOX", msgs); err != nil {
			t.Fatal(err)
		}
		want += len(msgs)
		for _, m := range msgs {
			wantBytes += len(m.Body)
		}
	}
	port := freeTCPPort(t)
	dataDir := filepath.Join(t.TempDir(), "nats")
	path, _ := p.Config(t, dataDir)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	natsConf := fmt.Sprintf("nats: {url: nats://127.0.0.1:%d, user: %s, password_file: %s}\n", port, broker.DefaultUser, filepath.Join(dataDir, broker.PasswordFileName))
	conf := filepath.Join(p.Dir, "daemons.yaml")
	body := strings.Replace(string(raw), "nats:\n  data_dir: "+dataDir+"\n", natsConf, 1)
	pwFile := filepath.Join(p.Dir, "metrics.password")
	if err := os.WriteFile(pwFile, []byte(metricsPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsConf := fmt.Sprintf("metrics: {user: %s, password_file: %s}\n", metricsUser, pwFile)
	if err := os.WriteFile(conf, []byte(body+"extractor: {concurrency: 2}\nloader: {concurrency: 2}\n"+metricsConf), 0o600); err != nil {
		t.Fatal(err)
	}
	serverConf := filepath.Join(p.Dir, "nats.yaml")
	if err := os.WriteFile(serverConf, []byte(fmt.Sprintf("nats: {data_dir: %s, listen: 127.0.0.1:%d}\nlog: {level: warn}\n", dataDir, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	natsd, err := proc.Start(bin, []string{"nats", "-c", serverConf}, proc.Options{Dir: p.Dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = natsd.Stop(5 * time.Second) })
	waitListening(ctx, t, natsd, port)
	urls := map[string]string{}
	daemons := map[string]*proc.Process{}
	for _, svc := range []string{"extractor", "loader"} {
		addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
		urls[svc] = "http://" + addr
		// The section comes from the environment here, as any key may.
		d, err := proc.Start(bin, []string{svc, "-c", conf}, proc.Options{Dir: p.Dir, Env: []string{"MAILFERRY_METRICS_LISTEN=" + addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop(5 * time.Second) })
		daemons[svc] = d
		if err := d.Ready(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			code, body, err := scrape(ctx, urls[svc]+"/readyz")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("/readyz: %d %s", code, body)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := cli(t, ctx, "enqueue", "-c", conf); err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	var loaderScrape string
	for {
		_, body, err := scrape(ctx, urls["loader"]+"/metrics")
		if err == nil && sample(body, "mailferry_messages_appended_total") == float64(want) {
			loaderScrape = body
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the loader did not count %d appended messages: %v\n%s\nloader:\n%s", want, err, body, daemons["loader"].Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := cli(t, ctx, "verify", "-c", conf); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	_, extractorScrape, err := scrape(ctx, urls["extractor"]+"/metrics")
	if err != nil {
		t.Fatal(err)
	}

	for svc, body := range map[string]string{"extractor": extractorScrape, "loader": loaderScrape} {
		check := exec.CommandContext(ctx, tool, "check", "metrics")
		check.Stdin = strings.NewReader(body)
		var out bytes.Buffer
		check.Stdout, check.Stderr = &out, &out
		if err := check.Run(); err != nil {
			t.Errorf("promtool check metrics on the %s's scrape: %v\n%s", svc, err, out.String())
		}
	}
	checks := []struct {
		scrape, series string
		want           func(float64) bool
		says           string
	}{
		{extractorScrape, "mailferry_messages_extracted_total", func(v float64) bool { return v == float64(want) }, fmt.Sprint(want)},
		{loaderScrape, "mailferry_bytes_appended_total", func(v float64) bool { return v >= float64(wantBytes) }, fmt.Sprintf("at least %d", wantBytes)},
		{loaderScrape, "mailferry_dead_letters_total", func(v float64) bool { return v == 0 }, "0"},
		{extractorScrape, `mailferry_imap_command_duration_seconds_count{command="UID FETCH",server="source"}`, func(v float64) bool { return v >= 2 }, "at least one per mailbox"},
		{extractorScrape, `mailferry_imap_command_duration_seconds_count{command="AUTHENTICATE",server="source"}`, func(v float64) bool { return v >= 2 }, "a master login per mailbox"},
		{loaderScrape, `mailferry_imap_command_duration_seconds_count{command="APPEND",server="target"}`, func(v float64) bool { return v >= 2 }, "at least one per mailbox"},
		{extractorScrape, `mailferry_consumer_pending_messages{consumer="extractor",stream="MF_JOBS"}`, func(v float64) bool { return v == 0 }, "0 once every job was taken"},
		{loaderScrape, `mailferry_consumer_pending_messages{consumer="loader",stream="MF_JOBS"}`, func(v float64) bool { return v == 0 }, "0 once every job was taken"},
	}
	for _, c := range checks {
		if v := sample(c.scrape, c.series); !c.want(v) {
			t.Errorf("%s = %v, want %s", c.series, v, c.says)
		}
	}
	if strings.Contains(extractorScrape+loaderScrape, "old.example") {
		t.Error("a mailbox name is in the metrics")
	}

	// The broker goes away: alive, not ready.
	if err := natsd.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for svc, url := range urls {
		for {
			code, body, err := scrape(ctx, url+"/readyz")
			if err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "broker") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s /readyz with the broker down: %d %q %v, want 503 naming the broker", svc, code, body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if code, _, err := scrape(ctx, url+"/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("%s /healthz with the broker down: %d %v, want 200", svc, code, err)
		}
	}
}
