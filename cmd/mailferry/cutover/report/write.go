package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/shared/campaign"
)

//go:embed report.html.tmpl
var pageText string

// page is the customer's page: self-contained (inline CSS, no script, no
// external resource), every value escaped by html/template.
var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"when":          when,
	"size":          size,
	"plural":        plural,
	"phaseText":     phaseText,
	"phaseWhile":    phaseWhile,
	"phaseStep":     phaseStep,
	"statusClass":   statusClass,
	"boxText":       boxText,
	"kindText":      kindText,
	"dnsText":       dnsText,
	"openDiffs":     func(ds []Difference) []Difference { return pick(ds, false) },
	"acceptedDiffs": func(ds []Difference) []Difference { return pick(ds, true) },
}).Parse(pageText))

// HTML writes the report as a page for the customer.
func (r *Report) HTML(w io.Writer) error {
	if err := page.Execute(w, r); err != nil {
		return fmt.Errorf("render the report on %s: %w", r.Domain, err)
	}
	return nil
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode the report on %s: %w", r.Domain, err)
	}
	return nil
}

// Paths are the files Write writes the report on domain to in dir:
// <domain>.html and <domain>.json, the domain lower case without a final
// dot. `cutover status` shows them.
func Paths(dir, domain string) (htmlPath, jsonPath string) {
	name := campaign.NormalizeDomain(domain)
	return filepath.Join(dir, name+".html"), filepath.Join(dir, name+".json")
}

// Write writes r to dir (created, mode 0755, when missing) as
// <domain>.html and <domain>.json, each atomically: a temporary file in
// dir renamed over the old one, mode 0644.
func Write(dir string, r *Report) (htmlPath, jsonPath string, err error) {
	name := campaign.NormalizeDomain(r.Domain)
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") {
		return "", "", fmt.Errorf("write report: %q cannot name a file", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("write report on %s: %w", name, err)
	}
	var h, j bytes.Buffer
	if err := r.HTML(&h); err != nil {
		return "", "", err
	}
	if err := r.JSON(&j); err != nil {
		return "", "", err
	}
	htmlPath, jsonPath = Paths(dir, name)
	if err := writeFile(jsonPath, j.Bytes()); err != nil {
		return "", "", err
	}
	if err := writeFile(htmlPath, h.Bytes()); err != nil {
		return "", "", err
	}
	return htmlPath, jsonPath, nil
}

// writeFile replaces path with data atomically.
func writeFile(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pick(ds []Difference, accepted bool) []Difference {
	var out []Difference
	for _, d := range ds {
		if d.Accepted == accepted {
			out = append(out, d)
		}
	}
	return out
}

// when is a time as the page shows it; it takes a time or a pointer to one.
func when(v any) string {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v == nil {
			return ""
		}
		t = *v
	}
	return t.UTC().Format("2 January 2006, 15:04 UTC")
}

// size is a byte count in words: "512 bytes", "1.5 MB".
func size(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d %s", n, plural(n, "byte", "bytes"))
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PB", f/unit)
}

// plural is one when the count n (an int or int64) is 1, else many.
func plural(n any, one, many string) string {
	var c int64
	switch n := n.(type) {
	case int:
		c = int64(n)
	case int64:
		c = n
	}
	if c == 1 {
		return one
	}
	return many
}

// phaseTexts are a phase as the status and after "while".
var phaseTexts = map[campaign.Phase][2]string{
	campaign.Queued:       {"Waiting to start", "waiting to start"},
	campaign.Provisioning: {"Setting up the new mailboxes", "setting up the new mailboxes"},
	campaign.Prestaging:   {"Copying mail", "copying mail"},
	campaign.Switching:    {"Switching mail delivery", "switching mail delivery"},
	campaign.Draining:     {"Waiting for mail still on its way to the old server", "waiting for mail still on its way to the old server"},
	campaign.Delta:        {"Copying the last messages", "copying the last messages"},
	campaign.Verifying:    {"Checking every message", "checking every message"},
	campaign.Done:         {"Completed", "completed"},
	campaign.Failed:       {"Stopped by a problem", "stopped by a problem"},
	campaign.Paused:       {"Paused", "paused"},
}

func phaseWord(p campaign.Phase, i int) string {
	if t, ok := phaseTexts[p]; ok {
		return t[i]
	}
	return string(p)
}

func phaseText(p campaign.Phase) string  { return phaseWord(p, 0) }
func phaseWhile(p campaign.Phase) string { return phaseWord(p, 1) }

// phaseStep is a phase as a step of the timeline, which says when it
// began.
func phaseStep(p campaign.Phase) string {
	if p == campaign.Queued {
		return "Planned"
	}
	return phaseText(p)
}

func statusClass(p campaign.Phase) string {
	switch p {
	case campaign.Done:
		return "good"
	case campaign.Failed:
		return "bad"
	}
	return "wait"
}

func boxText(p campaign.MailboxPhase) string {
	switch p {
	case campaign.BoxQueued:
		return "waiting"
	case campaign.BoxCopying:
		return "copying"
	case campaign.BoxLoaded:
		return "copied"
	case campaign.BoxVerified:
		return "copied and checked"
	case campaign.BoxFailed:
		return "problem"
	}
	return string(p)
}

func kindText(kind string) string {
	switch kind {
	case verify.KindMissing:
		return "not at the new provider"
	case verify.KindExtra:
		return "only at the new provider"
	case verify.KindAltered:
		return "stored by the new provider with small changes (line endings)"
	case verify.KindFlags:
		return "marks (read, answered, flagged) differ"
	case verify.KindDate:
		return "received date differs"
	}
	return kind
}

func dnsText(r *Report) string {
	switch {
	case r.DNSSkipped:
		return "not changed by this move"
	case r.SwitchedAt != nil:
		return "mail for this domain goes to the new provider since " + when(r.SwitchedAt)
	}
	return "mail for this domain still goes to the old server"
}
