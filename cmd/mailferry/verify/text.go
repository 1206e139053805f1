package verify

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteText writes the report for people: one line per mailbox, one per
// differing folder, two per difference (what differs, then the message as
// a person would find it: size, Date, From, Subject, Message-ID), and the
// same for each accepted difference, marked ACCEPTED, with its reason.
// Mail new at either side, copies of mail deleted at the source and flags
// resynced are counted on the mailbox's line; so are the source's messages
// that are no mail, each listed under its folder as not mail, not copied.
func (r *Report) WriteText(w io.Writer) {
	bad, waiting := 0, 0
	for _, m := range r.Mailboxes {
		status := "ok"
		switch {
		case m.WaitingForUser:
			status = "WAITING"
			waiting++
		case !m.OK:
			status = "DIFFERENT"
			bad++
		}
		fmt.Fprintf(w, "%-9s %s -> %s: %d messages (%s) in %d folders", status, m.Source, m.Target, m.Messages, humanSize(m.Bytes), len(m.Folders))
		if m.NewAfter != nil {
			fmt.Fprintf(w, ", %d new at target since the switch at %s", m.NewAtTarget, m.NewAfter.Format(time.RFC3339))
		}
		if m.NewAtSourceAfter != nil {
			fmt.Fprintf(w, ", %d new at source since the pass started at %s", m.NewAtSource, m.NewAtSourceAfter.Format(time.RFC3339))
		}
		if m.DeletedAtSource > 0 {
			fmt.Fprintf(w, ", %d deleted at source after the copy (kept at target)", m.DeletedAtSource)
		}
		if m.Resynced > 0 {
			fmt.Fprintf(w, ", flags of %d messages resynced from the source", m.Resynced)
		}
		if m.Accepted > 0 {
			fmt.Fprintf(w, ", %d differences accepted", m.Accepted)
		}
		if m.NotMail > 0 {
			fmt.Fprintf(w, ", %d not mail, not copied", m.NotMail)
		}
		fmt.Fprintln(w)
		if m.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", m.Note)
		}
		if m.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", m.Error)
		}
		for _, f := range m.Folders {
			if f.OK() && len(f.Accepted) == 0 && len(f.NotMail) == 0 {
				continue
			}
			fmt.Fprintf(w, "  folder %q -> %q: source %d, target %d\n", f.Sources, f.Target, f.SourceMessages, f.TargetMessages)
			for _, d := range f.Differences {
				writeDiff(w, "    ", d, "")
			}
			for _, d := range f.NotMail {
				fmt.Fprintf(w, "    not mail, not copied: %s uid %d: %s item without a mail header, %s, sha256 %.16s\n", d.Folder, d.UID, d.NotMail, humanSize(d.Size), d.SHA256)
			}
			for _, a := range f.Accepted {
				writeDiff(w, "    ACCEPTED ", a.Diff, fmt.Sprintf(" (%s; accepted by %s at %s)", a.Reason, orNone(a.AcceptedBy), a.AcceptedAt.UTC().Format(time.RFC3339)))
			}
		}
	}
	fmt.Fprintf(w, "verified %d mailboxes: %d ok, %d different", len(r.Mailboxes), len(r.Mailboxes)-bad-waiting, bad)
	if waiting > 0 {
		fmt.Fprintf(w, ", %d waiting for their user (no source password until they sign in)", waiting)
	}
	fmt.Fprintln(w)
}

// writeDiff writes a difference's two lines: what differs, after prefix
// and followed by suffix, then the message.
func writeDiff(w io.Writer, prefix string, d Diff, suffix string) {
	fmt.Fprintf(w, "%s%-7s %s uid %d sha256 %.16s", prefix, d.Kind, d.Folder, d.UID, d.SHA256)
	if d.Want != "" || d.Got != "" {
		fmt.Fprintf(w, " want %q got %q", d.Want, d.Got)
	}
	if len(d.Refused) > 0 {
		fmt.Fprintf(w, " refused by the target: %s", strings.Join(d.Refused, " "))
	}
	if d.ResyncError != "" {
		fmt.Fprintf(w, " resync failed: %s", d.ResyncError)
	}
	fmt.Fprintf(w, "%s\n", suffix)
	fmt.Fprintf(w, "%*s%s, date %s, from %s, subject %s, message-id %s\n", len(prefix)+8, "",
		humanSize(d.Size), orNone(d.Date), orNone(d.From), orNone(d.Subject), orNone(d.MessageID))
}

// orNone quotes a header field for the text report, or says it is absent.
func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return strconv.Quote(s)
}

// humanSize spells a byte count for people: "812 B", "1.4 MB".
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
