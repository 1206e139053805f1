package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Names of the runs the summary's ratios are taken against: doveadm with
// two and with one mailbox at once.
var ratioBases = []string{toolDoveadm + " ×2", toolDoveadm + " ×1"}

// Report is the outcome of a benchmark sitting.
type Report struct {
	Corpus *Corpus `json:"corpus"`
	// Dovecot is the version of both servers.
	Dovecot string `json:"dovecot,omitempty"`
	// Parallel is mailferry's mailboxes at once, CompareParallel the
	// comparison tools' (one run each).
	Parallel        int   `json:"parallel"`
	CompareParallel []int `json:"compare_parallel"`
	Rounds          int   `json:"rounds"`
	CPUs            int   `json:"cpus"`
	// LoadBefore and LoadAfter are the 1-minute load averages before the
	// first run and after the last: other work on the machine skews
	// every figure.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	// Results are every run, in the order they ran.
	Results []*Result `json:"results"`
	// Summary is filled by Summarize.
	Summary *Summary `json:"summary,omitempty"`
}

// Result is one run of one tool over the corpus.
type Result struct {
	// Tool names the run: "mailferry services", "mailferry migrate",
	// "doveadm ×2", "mbsync ×1".
	Tool string `json:"tool"`
	// Mode is mailferry's (services or migrate), empty for the others.
	Mode string `json:"mode,omitempty"`
	// Parallel is how many mailboxes the tool migrated at once.
	Parallel int `json:"parallel"`
	Round    int `json:"round"`
	// Messages and Bytes are the corpus: what the tool had to move.
	Messages int   `json:"messages"`
	Bytes    int64 `json:"bytes"`
	// CopySeconds is the copy's wall time (0: unknown), VerifySeconds
	// what mailferry's own verification added after it (0 for the other
	// tools, or unknown), Seconds the run's total wall time: copy plus
	// verification for the services, start to exit for migrate, the copy
	// for the other tools.
	CopySeconds   float64 `json:"copy_seconds"`
	VerifySeconds float64 `json:"verify_seconds"`
	Seconds       float64 `json:"total_seconds"`
	// MessagesPerSec and MBPerSec are over the copy's time.
	MessagesPerSec float64 `json:"messages_per_second"`
	MBPerSec       float64 `json:"mb_per_second"`
	// Peaks is the peak RSS per kind of process.
	Peaks []Peak `json:"peak_rss"`
	// CPU is the user and system time of the tool's processes, Processes
	// its parts; ServerCPU that of both Dovecot servers during the run,
	// SourceCPU and TargetCPU its parts.
	CPU            float64      `json:"cpu_seconds"`
	Processes      []ProcessCPU `json:"process_cpu,omitempty"`
	ServerCPU      float64      `json:"dovecot_cpu_seconds"`
	SourceCPU      float64      `json:"dovecot_source_cpu_seconds"`
	TargetCPU      float64      `json:"dovecot_target_cpu_seconds"`
	TargetMessages int          `json:"target_messages"`
	// TargetBytes is what the target holds after the run (TargetMessages
	// messages).
	TargetBytes int64         `json:"target_bytes"`
	Verify      *Verification `json:"verification,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
	Error       string        `json:"error,omitempty"`
}

// setCopy records the copy's wall time and the rates over it.
func (res *Result) setCopy(d time.Duration) {
	res.CopySeconds = d.Seconds()
	if res.CopySeconds > 0 {
		res.MessagesPerSec = float64(res.Messages) / res.CopySeconds
		res.MBPerSec = float64(res.Bytes) / 1e6 / res.CopySeconds
	}
}

// ok reports whether the run completed (and, for mailferry, verified).
func (res *Result) ok() bool {
	if res.Error != "" || res.Seconds <= 0 {
		return false
	}
	return res.Mode == "" || (res.Verify != nil && res.Verify.OK)
}

// Peak is the largest peak RSS among Count processes of one kind.
type Peak struct {
	Process string `json:"process"`
	KiB     int64  `json:"kib"`
	Count   int    `json:"processes"`
}

// ProcessCPU is the CPU seconds (user and system) of one kind of process.
type ProcessCPU struct {
	Process string  `json:"process"`
	Seconds float64 `json:"seconds"`
}

// Verification is the outcome of mailferry's verification of a target.
type Verification struct {
	OK          bool           `json:"ok"`
	Mailboxes   int            `json:"mailboxes"`
	Messages    int            `json:"messages"`
	Seconds     float64        `json:"seconds"`
	Differences map[string]int `json:"differences,omitempty"`
	Errors      []string       `json:"errors,omitempty"`
}

// String says whether the verification passed and what differed.
func (v *Verification) String() string {
	if v == nil {
		return "not run"
	}
	if v.OK {
		s := fmt.Sprintf("passed (%d mailboxes, %d messages", v.Mailboxes, v.Messages)
		if v.Seconds > 0 {
			s += fmt.Sprintf(", %.1f s", v.Seconds)
		}
		return s + ")"
	}
	kinds := make([]string, 0, len(v.Differences))
	total := 0
	for k, n := range v.Differences {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	s := "FAILED"
	if total > 0 {
		s += fmt.Sprintf(": %d differences (%s)", total, strings.Join(kinds, ", "))
	}
	if len(v.Errors) > 0 {
		s += fmt.Sprintf("; %d mailboxes not compared, first: %s", len(v.Errors), v.Errors[0])
	}
	return s
}

// Summary is the best run of each tool and how mailferry migrate compares
// with doveadm.
type Summary struct {
	// Best is, per tool, the completed run with the lowest total wall
	// time, in the order the tools first ran.
	Best   []*Result `json:"best"`
	Ratios []Ratio   `json:"ratios"`
}

// Ratio is Of's seconds divided by To's total seconds, of their best runs.
type Ratio struct {
	// Of is "mailferry migrate total" or "mailferry migrate verification".
	Of    string  `json:"of"`
	To    string  `json:"to"`
	Value float64 `json:"value"`
}

// Summarize fills rep.Summary from rep.Results.
func (rep *Report) Summarize() {
	s := &Summary{}
	best := map[string]*Result{}
	for _, res := range rep.Results {
		if !res.ok() {
			continue
		}
		b, seen := best[res.Tool]
		if !seen {
			s.Best = append(s.Best, res)
		}
		if !seen || res.Seconds < b.Seconds {
			best[res.Tool] = res
		}
	}
	for i, b := range s.Best {
		s.Best[i] = best[b.Tool]
	}
	mf := best[mailferryName(modeMigrate)]
	for _, base := range ratioBases {
		to := best[base]
		if mf == nil || to == nil {
			continue
		}
		s.Ratios = append(s.Ratios, Ratio{Of: mf.Tool + " total", To: base, Value: mf.Seconds / to.Seconds})
		if mf.VerifySeconds > 0 {
			s.Ratios = append(s.Ratios, Ratio{Of: mf.Tool + " verification", To: base, Value: mf.VerifySeconds / to.Seconds})
		}
	}
	rep.Summary = s
}

// corpusLine describes the corpus in one line.
func (rep *Report) corpusLine() string {
	c := rep.Corpus
	return fmt.Sprintf("%d mailboxes, %d folders, %d messages, %.1f MB (median %.1f kB, largest %.1f MB, %d over 1 MB), seed %d",
		c.Mailboxes, c.Folders, c.Messages, float64(c.Bytes)/1e6, float64(c.Median)/1e3, float64(c.Largest)/1e6, c.Over1MB, c.Seed)
}

// loadLine gives the load averages of the sitting and the machine.
func (rep *Report) loadLine() string {
	return fmt.Sprintf("load average (1 min) %.1f before the sitting, %.1f after; %d CPUs", rep.LoadBefore, rep.LoadAfter, rep.CPUs)
}

// WriteText writes every run as a table, then the summary, verifications,
// notes and errors.
func (rep *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "corpus: %s\n", rep.corpusLine())
	server := "Dovecot"
	if rep.Dovecot != "" {
		server += " " + rep.Dovecot
	}
	fmt.Fprintf(w, "every run: fresh empty target %s, same source; mailferry %d mailboxes at once; %s; MB = 10^6 bytes, rates over the copy\n",
		server, rep.Parallel, plural(rep.Rounds, "round"))
	fmt.Fprintf(w, "machine: %s\n\n", rep.loadLine())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "round\ttool\tparallel\tcopy s\tverify s\ttotal s\tmsgs/s\tMB/s\ton target\tpeak RSS\tCPU s\tdovecot CPU s (source+target)")
	for _, res := range rep.Results {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f (%.1f+%.1f)\n",
			res.Round, res.Tool, res.Parallel, secs(res.CopySeconds), verifySecs(res), secs(res.Seconds),
			rate(res.MessagesPerSec, "%.0f"), rate(res.MBPerSec, "%.1f"),
			fmt.Sprintf("%d msgs, %.1f MB", res.TargetMessages, float64(res.TargetBytes)/1e6),
			peaks(res.Peaks), processCPU(res), res.ServerCPU, res.SourceCPU, res.TargetCPU)
	}
	tw.Flush()
	if s := rep.Summary; s != nil {
		fmt.Fprintf(w, "\nbest of %s (lowest total):\n", plural(rep.Rounds, "round"))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "tool\tround\tcopy s\tverify s\ttotal s\tpeak RSS\tCPU s\tdovecot CPU s")
		for _, res := range s.Best {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.1f\n", res.Tool, res.Round, secs(res.CopySeconds), verifySecs(res),
				secs(res.Seconds), peaks(res.Peaks), processCPU(res), res.ServerCPU)
		}
		tw.Flush()
		for _, r := range s.Ratios {
			fmt.Fprintf(w, "ratio: %s ÷ %s = %.2f\n", r.Of, r.To, r.Value)
		}
	}
	fmt.Fprintln(w)
	for _, res := range rep.Results {
		if res.Verify != nil || res.Mode != "" {
			fmt.Fprintf(w, "round %d %s verification: %s\n", res.Round, res.Tool, res.Verify)
		}
	}
	for _, res := range rep.Results {
		for _, n := range res.Notes {
			fmt.Fprintf(w, "note: round %d %s: %s\n", res.Round, res.Tool, n)
		}
	}
	for _, res := range rep.Results {
		if res.Error != "" {
			fmt.Fprintf(w, "error: round %d %s: %s\n", res.Round, res.Tool, res.Error)
		}
	}
}

// WriteMarkdown writes the summary as the README shows it: the corpus, the
// load average of the sitting and a table of the best run of each tool.
func (rep *Report) WriteMarkdown(w io.Writer) {
	server := "Dovecot"
	if rep.Dovecot != "" {
		server += " " + strings.Fields(rep.Dovecot)[0]
	}
	fmt.Fprintf(w, "Corpus: %s; %s → %s on loopback, target emptied before each run, best of %s.  \n",
		rep.corpusLine(), server, server, plural(rep.Rounds, "round"))
	fmt.Fprintf(w, "Sitting: %s.\n\n", rep.loadLine())
	base := ratioBases[0]
	fmt.Fprintf(w, "| | copy | verification | total | ratio to %s | peak RSS | CPU s (tool + Dovecot) |\n", base)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	if rep.Summary == nil {
		return
	}
	var to *Result
	for _, res := range rep.Summary.Best {
		if res.Tool == base {
			to = res
		}
	}
	for _, res := range rep.Summary.Best {
		ratio := "–"
		if to != nil {
			ratio = fmt.Sprintf("%.2f×", res.Seconds/to.Seconds)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.1f + %.1f |\n", markdownTool(res, rep.Parallel),
			mdSecs(res.CopySeconds), mdVerify(res), mdSecs(res.Seconds), ratio, mdPeaks(res.Peaks), res.CPU, res.ServerCPU)
	}
	if len(rep.Summary.Ratios) > 0 {
		fmt.Fprintln(w)
	}
	for _, r := range rep.Summary.Ratios {
		fmt.Fprintf(w, "- %s ÷ %s: **%.2f×**%s\n", r.Of, r.To, r.Value, r.goal())
	}
}

// goal is the goal for the ratio, as a suffix to it.
func (r Ratio) goal() string {
	if r.To != ratioBases[0] {
		return ""
	}
	switch {
	case strings.HasSuffix(r.Of, " total"):
		return " (goal ≤ 0.8×)"
	case strings.HasSuffix(r.Of, " verification"):
		return " (goal ≤ 0.25×)"
	}
	return ""
}

// markdownTool describes the tool of res in the summary table.
func markdownTool(res *Result, parallel int) string {
	switch res.Mode {
	case modeMigrate:
		return fmt.Sprintf("`mailferry migrate` (all-in-one, embedded NATS; %d mailboxes at once)", parallel)
	case modeServices:
		return fmt.Sprintf("`mailferry extractor` + `loader` processes, NATS in the bench (%d mailboxes at once)", parallel)
	}
	name, _, _ := strings.Cut(res.Tool, " ")
	at := "1 mailbox at once"
	if res.Parallel != 1 {
		at = fmt.Sprintf("%d mailboxes at once", res.Parallel)
	}
	switch name {
	case toolDoveadm:
		return fmt.Sprintf("`doveadm backup -R imapc:`, %s (native C; no verification)", at)
	case toolMbsync:
		return fmt.Sprintf("`mbsync`, %s (no verification)", at)
	}
	return res.Tool
}

// mailferryName is the Tool of mailferry's runs in mode.
func mailferryName(mode string) string { return "mailferry " + mode }

// toolName is the Tool of a comparison tool's runs at parallel mailboxes
// at once.
func toolName(tool string, parallel int) string { return fmt.Sprintf("%s ×%d", tool, parallel) }

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func secs(s float64) string {
	if s <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", s)
}

func verifySecs(res *Result) string {
	if res.Mode == "" {
		return "none"
	}
	return secs(res.VerifySeconds)
}

func mdSecs(s float64) string {
	if s <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f s", s)
}

func mdVerify(res *Result) string {
	if res.Mode == "" {
		return "–"
	}
	return mdSecs(res.VerifySeconds)
}

func rate(v float64, format string) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func peaks(ps []Peak) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		s := fmt.Sprintf("%s %.1f MiB", p.Process, float64(p.KiB)/1024)
		if p.Count > 1 {
			s += fmt.Sprintf(" (largest of %d)", p.Count)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

// mdPeaks is the peak RSS in the summary table: one figure for a single
// kind of process, else one per kind.
func mdPeaks(ps []Peak) string {
	if len(ps) == 1 {
		s := fmt.Sprintf("%.0f MiB", float64(ps[0].KiB)/1024)
		if ps[0].Count > 1 {
			s += " per process"
		}
		return s
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s %.0f MiB", p.Process, float64(p.KiB)/1024))
	}
	if len(out) == 0 {
		return "?"
	}
	return strings.Join(out, ", ")
}

// processCPU is the tool's CPU seconds, split per process when there are
// several kinds.
func processCPU(res *Result) string {
	s := fmt.Sprintf("%.1f", res.CPU)
	if len(res.Processes) > 1 {
		parts := make([]string, 0, len(res.Processes))
		for _, p := range res.Processes {
			parts = append(parts, fmt.Sprintf("%s %.1f", p.Process, p.Seconds))
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}
