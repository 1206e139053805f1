package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	err = Main(ctx, []string{"-mailboxes", "2", "-messages", "40", "-max-size", "1MB", "-volume", "3MB", "-seed", "7",
		"-compare", "doveadm", "-compare-parallel", "1", "-rounds", "1", "-bin", bin, "-work", work, "-parallel", "2",
		"-json", "-markdown"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Main: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	// The text and the Markdown go to stderr with -json.
	text := stderr.String()
	for _, want := range []string{"msgs/s", "MB/s", "mailferry services verification: passed", "mailferry migrate verification: passed",
		"extractor", "loader", "nats+bench", "all-in-one", "| copy | verification | total |"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}

	// stdout is one JSON document.
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Corpus.Messages != 40 || rep.Corpus.Mailboxes != 2 || len(rep.Results) != 3 || rep.Summary == nil {
		t.Fatalf("report: corpus %+v, %d results, summary %v", rep.Corpus, len(rep.Results), rep.Summary)
	}
	for i, mode := range []string{modeServices, modeMigrate} {
		mf := rep.Results[i]
		if mf.Mode != mode || mf.Verify == nil || !mf.Verify.OK || mf.TargetMessages != 40 || mf.Seconds <= 0 {
			t.Errorf("mailferry %s result: %+v", mode, mf)
		}
		for _, p := range mf.Peaks {
			if p.KiB <= 0 {
				t.Errorf("mailferry %s: peak RSS of %s not measured", mode, p.Process)
			}
		}
	}
	if da := rep.Results[2]; da.Tool != "doveadm ×1" || da.Parallel != 1 || (da.Error == "" && da.TargetMessages != 40) {
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
		{"-volume", "lots"},
		{"-volume", "0"},
		{"-messages", "10000", "-volume", "100MB"},
		{"-messages", "100", "-volume", "10GB"},
		{"-compare", "imapsync"},
		{"-modes", "daemons"},
		{"-modes", ""},
		{"-compare-parallel", "0"},
		{"-compare-parallel", "two"},
		{"-mailboxes", "3", "-messages", "3000", "-compare-parallel", "4"},
		{"-compare-parallel", ""},
		{"-rounds", "0"},
		{"-rounds", "21"},
		{"-parallel", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestParseFlagsReadsEveryFlag(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, o *options)
	}{
		{"defaults are the issue's sitting", nil, func(t *testing.T, o *options) {
			t.Helper()
			if o.volume != 600_000_000 || o.maxSize != 25_000_000 || o.messages != 10000 || o.rounds != 2 || o.parallel != 4 ||
				strings.Join(o.modes, ",") != "services,migrate" || strings.Join(o.compare, ",") != "doveadm,mbsync" ||
				fmt.Sprint(o.compareParallel) != "[1 2]" || o.json || o.markdown {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{"sizes take units", []string{"-max-size", "2MiB", "-volume", "3GB", "-messages", "50000"}, func(t *testing.T, o *options) {
			t.Helper()
			if o.maxSize != 2<<20 || o.volume != 3_000_000_000 {
				t.Errorf("max size %d, volume %d", o.maxSize, o.volume)
			}
		}},
		{"lists are deduplicated in order", []string{"-compare", "mbsync, doveadm,mbsync", "-modes", "migrate,services,migrate",
			"-compare-parallel", "2, 1,2"}, func(t *testing.T, o *options) {
			t.Helper()
			if strings.Join(o.compare, ",") != "mbsync,doveadm" || strings.Join(o.modes, ",") != "migrate,services" ||
				fmt.Sprint(o.compareParallel) != "[2 1]" {
				t.Errorf("compare %q, modes %q, compare-parallel %v", o.compare, o.modes, o.compareParallel)
			}
		}},
		{"no comparison", []string{"-compare", "none", "-modes", "migrate", "-rounds", "1", "-json", "-markdown"}, func(t *testing.T, o *options) {
			t.Helper()
			if len(o.compare) != 0 || strings.Join(o.modes, ",") != "migrate" || o.rounds != 1 || !o.json || !o.markdown {
				t.Errorf("options: %+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

func TestPlanCorpusIsDeterministicAndLongTailed(t *testing.T) {
	users := []string{"a@x.example", "b@x.example", "c@x.example"}
	plan := func() []mailboxPlan {
		return planCorpus(users, 3000, 25_000_000, 200_000_000, newRand(42))
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

func TestPlanCorpusReachesTheVolumeWithTheSameShape(t *testing.T) {
	tests := []struct {
		name                string
		mailboxes, messages int
		maxSize, volume     int64
	}{
		{"issue's corpus", 20, 10000, 25_000_000, 600_000_000},
		{"five times larger", 20, 50000, 25_000_000, 3_000_000_000},
		{"debugging run", 20, 1000, 25_000_000, 60_000_000},
		{"smallest volume", 5, 1000, 25_000_000, minVolume(1000, 25_000_000)},
		{"small messages", 3, 2000, 1_000_000, 100_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := make([]string, tt.mailboxes)
			for i := range users {
				users[i] = fmt.Sprintf("u%d@x.example", i)
			}
			var sizes []int64
			var total int64
			for _, p := range planCorpus(users, tt.messages, tt.maxSize, tt.volume, newRand(1)) {
				for _, f := range p.folders {
					for _, s := range f.sizes {
						sizes = append(sizes, s)
						total += s
					}
				}
			}
			slices.Sort(sizes)
			if len(sizes) != tt.messages {
				t.Fatalf("planned %d messages, want %d", len(sizes), tt.messages)
			}
			if d := float64(total)/float64(tt.volume) - 1; d < -0.1 || d > 0.1 {
				t.Errorf("total %d bytes, %+.1f %% off the volume %d", total, 100*d, tt.volume)
			}
			if median := sizes[len(sizes)/2]; median < 7<<10 || median > 10<<10 {
				t.Errorf("median %d bytes, want about 8 KiB", median)
			}
			if largest := sizes[len(sizes)-1]; largest > tt.maxSize || largest < tt.maxSize*98/100 {
				t.Errorf("largest %d bytes, want just below the maximum %d", largest, tt.maxSize)
			}
		})
	}
}

// sampleReport is a sitting of one round of each tool, as the README's
// table would show it.
func sampleReport() *Report {
	return &Report{
		Corpus:  &Corpus{Mailboxes: 20, Folders: 150, Messages: 10014, Bytes: 618_000_000, Largest: 24_900_000, Median: 8200, Over1MB: 60, Seed: 1},
		Dovecot: "2.3.21 (47349e2482)", Parallel: 4, CompareParallel: []int{1, 2}, Rounds: 2, CPUs: 2, LoadBefore: 0.52, LoadAfter: 3.1,
		Results: []*Result{
			{Tool: "mailferry migrate", Mode: modeMigrate, Parallel: 4, Round: 1, CopySeconds: 18, VerifySeconds: 17, Seconds: 36,
				Peaks: []Peak{{Process: "all-in-one", KiB: 538 << 10, Count: 1}}, CPU: 30, ServerCPU: 12, Verify: &Verification{OK: true}},
			{Tool: "mailferry migrate", Mode: modeMigrate, Parallel: 4, Round: 2, CopySeconds: 17, VerifySeconds: 16, Seconds: 33.4,
				Peaks: []Peak{{Process: "all-in-one", KiB: 538 << 10, Count: 1}}, CPU: 29.5, ServerCPU: 11.5, Verify: &Verification{OK: true}},
			{Tool: "mailferry services", Mode: modeServices, Parallel: 4, Round: 1, CopySeconds: 16, VerifySeconds: 15, Seconds: 31,
				Peaks: []Peak{{Process: "extractor", KiB: 40 << 10}, {Process: "loader", KiB: 60 << 10}, {Process: "nats+bench", KiB: 300 << 10}},
				CPU:   25, ServerCPU: 11, Verify: &Verification{OK: false}},
			{Tool: "doveadm ×1", Parallel: 1, Round: 1, CopySeconds: 25, Seconds: 25, Peaks: []Peak{{Process: "doveadm", KiB: 100 << 10, Count: 20}}, CPU: 10, ServerCPU: 5},
			{Tool: "doveadm ×2", Parallel: 2, Round: 1, CopySeconds: 15, Seconds: 15, Peaks: []Peak{{Process: "doveadm", KiB: 100 << 10, Count: 20}}, CPU: 10, ServerCPU: 5},
			{Tool: "doveadm ×2", Parallel: 2, Round: 2, Error: "3 of 20 mailboxes failed"},
			{Tool: "mbsync ×2", Parallel: 2, Round: 1, CopySeconds: 40, Seconds: 40, Peaks: []Peak{{Process: "mbsync", KiB: 20 << 10, Count: 20}}, CPU: 12, ServerCPU: 20},
		},
	}
}

func TestSummarizeKeepsTheBestCompletedRunOfEachToolAndTheRatios(t *testing.T) {
	rep := sampleReport()
	rep.Summarize()
	var got []string
	for _, b := range rep.Summary.Best {
		got = append(got, fmt.Sprintf("%s r%d", b.Tool, b.Round))
	}
	// The services run did not verify and doveadm ×2's second run failed:
	// neither is a best.
	if want := "mailferry migrate r2,doveadm ×1 r1,doveadm ×2 r1,mbsync ×2 r1"; strings.Join(got, ",") != want {
		t.Errorf("best: %s, want %s", strings.Join(got, ","), want)
	}
	var ratios []string
	for _, r := range rep.Summary.Ratios {
		ratios = append(ratios, fmt.Sprintf("%s/%s=%.3f", r.Of, r.To, r.Value))
	}
	want := "mailferry migrate total/doveadm ×2=2.227,mailferry migrate verification/doveadm ×2=1.067," +
		"mailferry migrate total/doveadm ×1=1.336,mailferry migrate verification/doveadm ×1=0.640"
	if strings.Join(ratios, ",") != want {
		t.Errorf("ratios:\n%s\nwant\n%s", strings.Join(ratios, ","), want)
	}
}

func TestWriteMarkdownShowsTheSummaryAsTheREADMEDoes(t *testing.T) {
	rep := sampleReport()
	rep.Summarize()
	var b strings.Builder
	rep.WriteMarkdown(&b)
	want := "Corpus: 20 mailboxes, 150 folders, 10014 messages, 618.0 MB (median 8.2 kB, largest 24.9 MB, 60 over 1 MB), seed 1; " +
		"Dovecot 2.3.21 → Dovecot 2.3.21 on loopback, target emptied before each run, best of 2 rounds.  \n" +
		"Sitting: load average (1 min) 0.5 before the sitting, 3.1 after; 2 CPUs.\n" +
		"\n" +
		"| | copy | verification | total | ratio to doveadm ×2 | peak RSS | CPU s (tool + Dovecot) |\n" +
		"|---|---|---|---|---|---|---|\n" +
		"| `mailferry migrate` (all-in-one, embedded NATS; 4 mailboxes at once) | 17.0 s | 16.0 s | 33.4 s | 2.23× | 538 MiB | 29.5 + 11.5 |\n" +
		"| `doveadm backup -R imapc:`, 1 mailbox at once (native C; no verification) | 25.0 s | – | 25.0 s | 1.67× | 100 MiB per process | 10.0 + 5.0 |\n" +
		"| `doveadm backup -R imapc:`, 2 mailboxes at once (native C; no verification) | 15.0 s | – | 15.0 s | 1.00× | 100 MiB per process | 10.0 + 5.0 |\n" +
		"| `mbsync`, 2 mailboxes at once (no verification) | 40.0 s | – | 40.0 s | 2.67× | 20 MiB per process | 12.0 + 20.0 |\n" +
		"\n" +
		"- mailferry migrate total ÷ doveadm ×2: **2.23×** (goal ≤ 0.8×)\n" +
		"- mailferry migrate verification ÷ doveadm ×2: **1.07×** (goal ≤ 0.25×)\n" +
		"- mailferry migrate total ÷ doveadm ×1: **1.34×**\n" +
		"- mailferry migrate verification ÷ doveadm ×1: **0.64×**\n"
	if got := b.String(); got != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTextListsEveryRunAndTheUnknownCopyOfAnOldBinary(t *testing.T) {
	rep := sampleReport()
	rep.Results[0].CopySeconds, rep.Results[0].VerifySeconds = 0, 0
	rep.Summarize()
	var b strings.Builder
	rep.WriteText(&b)
	out := b.String()
	for _, want := range []string{
		"1      mailferry migrate   4         -       -         36.0",
		"doveadm ×2", "error: round 2 doveadm ×2: 3 of 20 mailboxes failed",
		"extractor 40.0 MiB, loader 60.0 MiB, nats+bench 300.0 MiB",
		"round 1 mailferry services verification: FAILED",
		"ratio: mailferry migrate total ÷ doveadm ×2 = 2.23",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestMigrateResultRecordsCopyAndVerificationOrOnlyTheTotal(t *testing.T) {
	tests := []struct {
		name         string
		json         string
		copy, verify float64
		wantErr      bool
	}{
		{"current binary", `{"Pass":"p","Took":9000000000,"CopyTook":6000000000,"VerifyTook":3000000000,"Report":{"ok":true,"mailboxes":[{"messages":40}]}}`, 6, 3, false},
		{"binary without CopyTook", `{"Pass":"p","Took":9000000000,"Report":{"ok":true}}`, 0, 0, false},
		{"no report", `{"Took":9000000000,"CopyTook":6000000000,"VerifyTook":0}`, 6, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mr migrateResult
			if err := json.Unmarshal([]byte(tt.json), &mr); err != nil {
				t.Fatal(err)
			}
			res := &Result{Mode: modeMigrate, Messages: 40, Bytes: 12_000_000}
			err := mr.record(res, 10*time.Second)
			if (err != nil) != tt.wantErr {
				t.Fatalf("record: %v, want error %t", err, tt.wantErr)
			}
			if res.Seconds != 10 || res.CopySeconds != tt.copy || res.VerifySeconds != tt.verify {
				t.Errorf("total %.1f, copy %.1f, verification %.1f; want 10, %.1f, %.1f", res.Seconds, res.CopySeconds, res.VerifySeconds, tt.copy, tt.verify)
			}
			if tt.copy > 0 && res.MBPerSec != 2 {
				t.Errorf("MB/s %.2f over the copy, want 2", res.MBPerSec)
			}
			if !tt.wantErr && (res.Verify == nil || !res.Verify.OK) {
				t.Errorf("verification %v", res.Verify)
			}
		})
	}
}
