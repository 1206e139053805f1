package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/testenv/dovecottest"
)

// buildMailferry builds the mailferry binary, which runs the extractor and
// the loader: the test binary cannot.
func buildMailferry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailferry")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/mailferry/mailferry/cmd/mailferry").CombinedOutput()
	if err != nil {
		t.Fatalf("go build mailferry: %v\n%s", err, out)
	}
	return bin
}

func TestMainMigratesASmallCorpusVerifiesAndReportsRates(t *testing.T) {
	dovecottest.Require(t)
	if testing.Short() {
		t.Skip("starts three Dovecot servers and builds mailferry")
	}
	bin := buildMailferry(t)
	// Dovecot's auth process must traverse the work dir: t.TempDir's
	// parents are 0700.
	work, err := os.MkdirTemp("", "mailferry-bench-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err = Main(ctx, []string{"-mailboxes", "2", "-messages", "40", "-max-size", "1MB", "-seed", "7",
		"-compare", "doveadm", "-bin", bin, "-work", work, "-parallel", "2", "-json"}, &stdout, &stderr)
	out := stdout.String()
	if err != nil {
		t.Fatalf("Main: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	for _, want := range []string{"messages/s", "MB/s", "mailferry verification: passed", "extractor", "loader", "nats+bench"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The last line is the JSON report.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rep Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("JSON line: %v\n%s", err, out)
	}
	if rep.Corpus.Messages != 40 || rep.Corpus.Mailboxes != 2 || len(rep.Results) != 2 {
		t.Fatalf("report: corpus %+v, %d results", rep.Corpus, len(rep.Results))
	}
	mf := rep.Results[0]
	if mf.Tool != "mailferry" || mf.Verify == nil || !mf.Verify.OK || mf.TargetMessages != 40 || mf.MessagesPerSec <= 0 {
		t.Errorf("mailferry result: %+v", mf)
	}
	for _, p := range mf.Peaks {
		if p.KiB <= 0 {
			t.Errorf("mailferry peak RSS of %s not measured", p.Process)
		}
	}
	if da := rep.Results[1]; da.Tool != toolDoveadm || (da.Error == "" && da.TargetMessages != 40) {
		t.Errorf("doveadm result: %+v", da)
	}

	// Only the work dir itself is left: every phase removed its own.
	left, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("work dir not cleaned up: %v", left)
	}
}

func TestParseFlagsRejectsNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"-mailboxes", "0"},
		{"-mailboxes", "3", "-messages", "2"},
		{"-max-size", "1kB"},
		{"-max-size", "lots"},
		{"-compare", "imapsync"},
		{"-parallel", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags([]string{"-max-size", "2MiB", "-compare", "mbsync, doveadm,mbsync"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.maxSize != 2<<20 || strings.Join(o.compare, ",") != "mbsync,doveadm" {
		t.Errorf("got max size %d, compare %q", o.maxSize, o.compare)
	}
}

func TestPlanCorpusIsDeterministicAndLongTailed(t *testing.T) {
	users := []string{"a@x.example", "b@x.example", "c@x.example"}
	plan := func() []mailboxPlan {
		return planCorpus(users, 3000, 25_000_000, newRand(42))
	}
	p1, p2 := plan(), plan()
	var n int
	var largest int64
	for i := range p1 {
		if len(p1[i].folders) != len(p2[i].folders) {
			t.Fatalf("mailbox %d: folder count differs between runs with one seed", i)
		}
		for j, f := range p1[i].folders {
			if f.name != p2[i].folders[j].name || len(f.sizes) != len(p2[i].folders[j].sizes) {
				t.Fatalf("mailbox %d folder %d differs between runs with one seed", i, j)
			}
			for k, s := range f.sizes {
				if s != p2[i].folders[j].sizes[k] {
					t.Fatalf("sizes differ between runs with one seed")
				}
				largest = max(largest, s)
			}
			n += len(f.sizes)
		}
	}
	if n != 3000 {
		t.Errorf("planned %d messages, want 3000", n)
	}
	if largest < 24_000_000 {
		t.Errorf("largest planned message %d bytes, want one near the 25 MB maximum", largest)
	}
}

func TestGenerateMessageUsesCRLFOnlyAndHitsItsSize(t *testing.T) {
	rng := newRand(1)
	for _, size := range []int64{minSize, 8 << 10, 200 << 10, 3 << 20} {
		m := generateMessage(rng, "u@x.example", size, time.Unix(1e9, 0), 1, 1)
		if bytes.ContainsAny(bytes.ReplaceAll(m, []byte("\r\n"), nil), "\r\n") {
			t.Errorf("size %d: bare CR or LF in message", size)
		}
		if d := int64(len(m)) - size; d < -1024 || d > 1024 {
			t.Errorf("size %d: generated %d bytes", size, len(m))
		}
	}
}
