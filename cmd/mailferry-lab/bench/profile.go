package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/event"
)

// profile starts the CPU profile of this process as name in -pprof's
// directory and returns what stops it and writes its heap profile; without
// -pprof it does nothing.
func (r *runner) profile(name string) (stop func()) {
	if r.pprofDir == "" {
		return func() {}
	}
	end, err := daemon.Profile(r.pprofDir, name)
	if err != nil {
		r.logf("warning: %v", err)
		return func() {}
	}
	return func() {
		if err := end(); err != nil {
			r.logf("warning: %v", err)
		}
	}
}

// serviceEnv is the environment of the extractor and the loader: with
// -pprof they profile themselves into its directory.
func (r *runner) serviceEnv() []string {
	env := childEnv()
	if r.pprofDir != "" {
		env = append(env, daemon.PprofDirEnv+"="+r.pprofDir)
	}
	return env
}

// timeline is when each mailbox of the pass was extracted and loaded, from
// the events' times: where the copy's wall time goes.
type timeline struct {
	start time.Time
	boxes map[string]*boxTimes
}

type boxTimes struct {
	extracting, extractStarted, extractFinished, loaded time.Time
	messages, bytes                                     int64
}

func newTimeline(start time.Time) *timeline {
	return &timeline{start: start, boxes: map[string]*boxTimes{}}
}

func (t *timeline) box(key string) *boxTimes {
	b := t.boxes[key]
	if b == nil {
		b = &boxTimes{}
		t.boxes[key] = b
	}
	return b
}

// add records e when it belongs to pass.
func (t *timeline) add(e *event.Event, pass string) {
	switch e.Type {
	case event.MailboxExtracting:
		var d event.ExtractingData
		if json.Unmarshal(e.Data, &d) == nil && d.Pass == pass {
			t.box(e.Key).extracting = e.Time
		}
	case event.MailboxExtracted:
		var d event.ExtractedData
		if json.Unmarshal(e.Data, &d) == nil && d.Pass == pass {
			b := t.box(e.Key)
			b.extractStarted, b.extractFinished, b.messages, b.bytes = d.Started, d.Finished, d.Messages, d.Bytes
		}
	case event.MailboxLoaded:
		var d event.LoadedData
		if json.Unmarshal(e.Data, &d) == nil && d.Pass == pass {
			t.box(e.Key).loaded = e.Time
		}
	}
}

// at is the seconds from the pass's start to x.
func (t *timeline) at(x time.Time) float64 {
	if x.IsZero() {
		return 0
	}
	return x.Sub(t.start).Seconds()
}

// summary says when extraction and loading ended, how long the extractor
// was busy, and how long a mailbox waited for its loading after its
// extraction ended.
func (t *timeline) summary() string {
	var lastExtracted, lastLoaded, busy float64
	var lags []float64
	for _, b := range t.boxes {
		lastExtracted = max(lastExtracted, t.at(b.extractFinished))
		lastLoaded = max(lastLoaded, t.at(b.loaded))
		if !b.extractStarted.IsZero() && !b.extractFinished.IsZero() {
			busy += b.extractFinished.Sub(b.extractStarted).Seconds()
		}
		if !b.loaded.IsZero() && !b.extractFinished.IsZero() {
			lags = append(lags, b.loaded.Sub(b.extractFinished).Seconds())
		}
	}
	if len(lags) == 0 {
		return "timeline: no mailbox both extracted and loaded"
	}
	slices.Sort(lags)
	return fmt.Sprintf("timeline: every mailbox extracted %.1f s and loaded %.1f s after the enqueue; "+
		"extraction took %.1f mailbox-seconds in all; a mailbox was loaded %.2f s (median; max %.2f s) after its extraction ended",
		lastExtracted, lastLoaded, busy, lags[len(lags)/2], lags[len(lags)-1])
}

// write writes the timeline as a table into dir/timeline.txt.
func (t *timeline) write(dir string) error {
	keys := make([]string, 0, len(t.boxes))
	for k := range t.boxes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return t.boxes[a].extracting.Compare(t.boxes[b].extracting) })
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mailbox\tmessages\tMB\textracting\textract started\textract finished\tloaded\t")
	for _, k := range keys {
		b := t.boxes[k]
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, b.messages, float64(b.bytes)/1e6,
			t.at(b.extracting), t.at(b.extractStarted), t.at(b.extractFinished), t.at(b.loaded))
	}
	tw.Flush()
	sb.WriteString("(seconds after the enqueue)\n")
	return os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(sb.String()), 0o644)
}
