package plan

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteText prints the plan for a person: per domain a table of its
// mailboxes, its estimated copy time, its phase and its DNS change, then
// the totals, the throughput and the notes. Estimated bytes are marked
// with "~".
func (p *Plan) WriteText(w io.Writer) {
	for _, d := range p.Domains {
		head := d.Domain
		if d.Phase != "" {
			head += "  (campaign: " + d.Phase + ")"
		}
		fmt.Fprintln(w, head)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  MAILBOX\tFOLDERS\tMESSAGES\tBYTES")
		for _, m := range d.Mailboxes {
			if m.Error != "" {
				fmt.Fprintf(tw, "  %s\t-\t-\t-\tnot read\n", m.Mailbox)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", m.Mailbox, m.Folders, m.Messages, bytesText(m.Bytes, m.BytesEstimated))
		}
		fmt.Fprintf(tw, "  total\t%d\t%d\t%s\n", d.Folders, d.Messages, bytesText(d.Bytes, d.BytesEstimated))
		tw.Flush()
		for _, m := range d.Mailboxes {
			if m.Error != "" {
				fmt.Fprintf(w, "  %s not read: %s\n", m.Mailbox, m.Error)
			}
		}
		fmt.Fprintf(w, "  estimated copy time: %s\n", duration(d.EstimateSeconds))
		fmt.Fprintf(w, "  dns: %s\n", d.DNS.Line())
		for _, c := range d.DNS.Changes {
			fmt.Fprintf(w, "    %s\n", c)
		}
		fmt.Fprintln(w)
	}
	t := p.Totals
	fmt.Fprintf(w, "total: %d domains (%d to switch), %d mailboxes", t.Domains, t.ToSwitch, t.Mailboxes)
	if t.Failed > 0 {
		fmt.Fprintf(w, " (%d not read)", t.Failed)
	}
	fmt.Fprintf(w, ", %d folders, %d messages, %s; estimated copy time %s\n",
		t.Folders, t.Messages, bytesText(t.Bytes, t.BytesEstimated), duration(t.EstimateSeconds))
	fmt.Fprintf(w, "throughput: %s/s, %.0f messages/s (%s)\n", bytesText(int64(p.Throughput.BytesPerSecond), false), p.Throughput.MessagesPerSecond, p.Throughput.Note)
	if t.BytesEstimated {
		fmt.Fprintf(w, "~ bytes estimated: the source does not report sizes (no STATUS=SIZE); messages x %s mean size (%s)\n",
			bytesText(p.Throughput.MeanMessageBytes, false), p.Throughput.Source)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// bytesText is n in B, kB, MB or GB (powers of 1000), "~" before an
// estimate.
func bytesText(n int64, estimated bool) string {
	s := ""
	if estimated {
		s = "~"
	}
	switch f := float64(n); {
	case n < 1000:
		return s + strconv.FormatInt(n, 10) + " B"
	case n < 1_000_000:
		return s + fmt.Sprintf("%.1f kB", f/1e3)
	case n < 1_000_000_000:
		return s + fmt.Sprintf("%.1f MB", f/1e6)
	default:
		return s + fmt.Sprintf("%.2f GB", f/1e9)
	}
}

// duration is seconds as a rounded duration: "0s", "42s", "1h2m3s".
func duration(seconds float64) string {
	return (time.Duration(seconds) * time.Second).String()
}
