package lifecycle_test

import (
	"cmp"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/lifecycle"
)

const mbx = "a@old.test"

func ev(t *testing.T, o event.Outgoing) *event.Event {
	t.Helper()
	e, err := o.Envelope("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Events of one mailbox, by what they say.
func queued(pass string) event.Outgoing     { return event.Queued(mbx, pass) }
func extracting(pass string) event.Outgoing { return event.Extracting(mbx, pass) }
func extracted(pass string, n int64) event.Outgoing {
	return event.Extracted(mbx, &event.ExtractedData{Mailbox: mbx, Pass: pass, Messages: n})
}
func loaded(pass string) event.Outgoing {
	return event.Loaded(mbx, event.LoadedData{Pass: pass, Appended: 3})
}
func verified(pass string) event.Outgoing {
	return event.Verified(mbx, event.VerifiedData{Pass: pass, Messages: 3, Digest: "d"})
}
func failed(pass, phase string, retried bool) event.Outgoing {
	return event.Failed(mbx, 1, event.FailedData{Pass: pass, Phase: phase, Reason: "down", Retried: retried})
}
func superseded(pass, by string) event.Outgoing {
	return event.Superseded(mbx, event.SupersededData{Pass: pass, By: by, Phase: event.PhaseExtracting})
}

func TestEventsFoldIntoThePhaseOfThePassFollowed(t *testing.T) {
	for _, c := range []struct {
		name        string
		follow      string          // "p1" when empty
		start       lifecycle.Phase // NotQueued when empty
		maxFailures int
		events      []event.Outgoing
		phase       lifecycle.Phase
		pass        string
		failures    int
		lastError   string
	}{
		{name: "nothing yet", phase: lifecycle.NotQueued, pass: "p1"},
		{name: "queued", events: []event.Outgoing{queued("p1")}, phase: lifecycle.Queued, pass: "p1"},
		{name: "a whole pass", events: []event.Outgoing{queued("p1"), extracting("p1"), extracted("p1", 3), loaded("p1")},
			phase: lifecycle.Loaded, pass: "p1"},
		{name: "verified after loaded", events: []event.Outgoing{queued("p1"), extracting("p1"), extracted("p1", 3), loaded("p1"), verified("p1")},
			phase: lifecycle.Verified, pass: "p1"},
		{name: "a verification before the pass loaded checked an earlier state",
			events: []event.Outgoing{queued("p1"), extracting("p1"), verified("p1"), extracted("p1", 3), loaded("p1")},
			phase:  lifecycle.Loaded, pass: "p1"},
		{name: "a job's event that overtook the queued one counts",
			events: []event.Outgoing{extracting("p1"), queued("p1")}, phase: lifecycle.Extracting, pass: "p1"},
		{name: "the phase never moves back", events: []event.Outgoing{queued("p1"), extracted("p1", 3), extracting("p1")},
			phase: lifecycle.Loading, pass: "p1"},
		{name: "events of another pass are not this one's",
			events: []event.Outgoing{queued("p1"), extracting("p0"), extracted("p0", 3), loaded("p0"), verified("p0"), failed("p0", event.PhaseLoading, false)},
			phase:  lifecycle.Queued, pass: "p1"},
		{name: "superseded: the newer pass's outcome is the mailbox's",
			events: []event.Outgoing{queued("p1"), extracting("p1"), superseded("p1", "p2"), loaded("p1"), extracted("p2", 3), loaded("p2")},
			phase:  lifecycle.Loaded, pass: "p2"},
		{name: "superseded twice", events: []event.Outgoing{superseded("p1", "p2"), superseded("p2", "p3"), superseded("p1", "p4")},
			start: lifecycle.Queued, phase: lifecycle.Queued, pass: "p3"},
		{name: "failed for good", events: []event.Outgoing{queued("p1"), extracting("p1"), failed("p1", event.PhaseExtracting, false)},
			phase: lifecycle.Failed, pass: "p1", failures: 1, lastError: "extracting: down"},
		{name: "failed for good is final", events: []event.Outgoing{queued("p1"), failed("p1", event.PhaseLoading, false), extracted("p1", 3), loaded("p1"), verified("p1")},
			phase: lifecycle.Failed, pass: "p1", failures: 1, lastError: "loading: down"},
		{name: "failed, retried, then loaded", events: []event.Outgoing{queued("p1"), failed("p1", event.PhaseLoading, true), loaded("p1")},
			phase: lifecycle.Loaded, pass: "p1", failures: 1, lastError: "loading: down"},
		{name: "retried failures up to the limit give up", maxFailures: 2,
			events: []event.Outgoing{queued("p1"), failed("p1", event.PhaseLoading, true), failed("p1", event.PhaseLoading, true), loaded("p1")},
			phase:  lifecycle.Failed, pass: "p1", failures: 2, lastError: "loading: down"},
		{name: "without a limit retried failures never give up",
			events: []event.Outgoing{queued("p1"), failed("p1", event.PhaseLoading, true), failed("p1", event.PhaseLoading, true), failed("p1", event.PhaseLoading, true)},
			phase:  lifecycle.Queued, pass: "p1", failures: 3, lastError: "loading: down"},
		{name: "a failure after loaded does not undo it", events: []event.Outgoing{queued("p1"), loaded("p1"), failed("p1", event.PhaseExtracting, false)},
			phase: lifecycle.Loaded, pass: "p1"},
		{name: "a replay after loaded is another pass",
			events: []event.Outgoing{queued("p1"), extracting("p1"), extracted("p1", 3), loaded("p1"), failed("replay-1", event.PhaseLoading, false), loaded("replay-1")},
			phase:  lifecycle.Loaded, pass: "p1"},
		{name: "a replay followed on its own pass", follow: "replay-1", start: lifecycle.Queued,
			events: []event.Outgoing{loaded("p1"), loaded("replay-1")}, phase: lifecycle.Loaded, pass: "replay-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := lifecycle.Mailbox{Mailbox: mbx, Pass: cmp.Or(c.follow, "p1"), Phase: cmp.Or(c.start, lifecycle.NotQueued), MaxFailures: c.maxFailures}
			for _, o := range c.events {
				m.Apply(ev(t, o))
			}
			if m.Phase != c.phase || m.Pass != c.pass || m.Failures != c.failures || m.LastError() != c.lastError {
				t.Errorf("phase %s pass %s failures %d last error %q, want %s %s %d %q",
					m.Phase, m.Pass, m.Failures, m.LastError(), c.phase, c.pass, c.failures, c.lastError)
			}
		})
	}
}

func TestApplySaysWhatChanged(t *testing.T) {
	m := lifecycle.Mailbox{Mailbox: mbx, Pass: "p1", Phase: lifecycle.Queued, MaxFailures: 2}
	for _, c := range []struct {
		o    event.Outgoing
		want lifecycle.Change
	}{
		{queued("p1"), lifecycle.Unchanged},
		{extracting("p1"), lifecycle.Advanced},
		{extracting("p0"), lifecycle.Unchanged},
		{event.Queued("b@old.test", "p1"), lifecycle.Unchanged},
		{superseded("p1", "p2"), lifecycle.Followed},
		{extracted("p2", 7), lifecycle.Advanced},
		{failed("p2", event.PhaseLoading, true), lifecycle.Retrying},
		{failed("p2", event.PhaseLoading, true), lifecycle.GaveUp},
		{loaded("p2"), lifecycle.Unchanged},
	} {
		if got := m.Apply(ev(t, c.o)); got != c.want {
			t.Errorf("%s %s: change %d, want %d", c.o.Type, c.o.ID, got, c.want)
		}
	}
	if m.Total != 7 || m.Result != nil {
		t.Errorf("total %d result %+v, want 7 and none", m.Total, m.Result)
	}
}

func TestALoaderSampleMeansLoadingHasBegun(t *testing.T) {
	for _, c := range []struct {
		name   string
		start  lifecycle.Phase
		sample event.Progress
		ours   bool
		want   lifecycle.Phase
	}{
		{"loader of the pass", lifecycle.Extracting, event.Progress{Service: "loader", Mailbox: mbx, Pass: "p1"}, true, lifecycle.Loading},
		{"extractor of the pass", lifecycle.Queued, event.Progress{Service: "extractor", Mailbox: mbx, Pass: "p1"}, true, lifecycle.Queued},
		{"loader of another pass", lifecycle.Queued, event.Progress{Service: "loader", Mailbox: mbx, Pass: "p0"}, false, lifecycle.Queued},
		{"loader after the end", lifecycle.Failed, event.Progress{Service: "loader", Mailbox: mbx, Pass: "p1"}, true, lifecycle.Failed},
		{"loader after loaded", lifecycle.Loaded, event.Progress{Service: "loader", Mailbox: mbx, Pass: "p1"}, true, lifecycle.Loaded},
	} {
		m := lifecycle.Mailbox{Mailbox: mbx, Pass: "p1", Phase: c.start}
		if ours := m.Sampled(c.sample); ours != c.ours || m.Phase != c.want {
			t.Errorf("%s: ours %t phase %s, want %t %s", c.name, ours, m.Phase, c.ours, c.want)
		}
	}
}

// A failure whose reason joins several errors (one per line) reads as one
// line: status and migrate print it in a table row.
func TestTheLastErrorOfAJoinedFailureIsOneLine(t *testing.T) {
	m := lifecycle.Mailbox{Mailbox: mbx, Pass: "p1"}
	m.Apply(ev(t, event.Failed(mbx, 1, event.FailedData{Pass: "p1", Phase: event.PhaseExtracting,
		Reason: "extract a@old.test: login refused\nmailbox locked\npermanent"})))
	if got, want := m.LastError(), "extracting: extract a@old.test: login refused; mailbox locked; permanent"; got != want {
		t.Errorf("last error %q, want %q", got, want)
	}
}
