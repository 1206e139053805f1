package lifecycle_test

import (
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/lifecycle"
)

func TestStandFoldsTheNewestPassAndTheCurrentVerification(t *testing.T) {
	loadedN := func(pass string, appended int64) event.Outgoing {
		return event.Loaded(mbx, event.LoadedData{Pass: pass, Appended: appended})
	}
	verifiedBy := func(pass string, differences int64) event.Outgoing {
		return event.Verified(mbx, event.VerifiedData{Pass: pass, Messages: 3, Digest: "d", Differences: differences})
	}
	done := []event.Outgoing{queued("p1"), extracting("p1"), extracted("p1", 3), loadedN("p1", 3), verifiedBy("p1", 0)}
	for _, c := range []struct {
		name     string
		events   []event.Outgoing
		sample   *event.Progress
		pass     string
		kind     string
		phase    lifecycle.Phase
		complete bool
		failed   bool
	}{
		{name: "nothing", phase: lifecycle.NotQueued},
		{name: "done", events: done, pass: "p1", phase: lifecycle.Verified, complete: true},
		{name: "a delta pass runs after done", events: append(done, extracting("delta-x-7")),
			pass: "delta-x-7", kind: lifecycle.PassDelta, phase: lifecycle.Extracting, complete: true},
		{name: "a delta pass loaded new mail: not verified since", events: append(done, extracting("delta-x-7"), loadedN("delta-x-7", 2)),
			pass: "delta-x-7", kind: lifecycle.PassDelta, phase: lifecycle.Loaded},
		{name: "verify names the pass last queued and still counts",
			events: append(done, extracting("delta-x-7"), loadedN("delta-x-7", 2), verifiedBy("p1", 0)),
			pass:   "delta-x-7", kind: lifecycle.PassDelta, phase: lifecycle.Loaded, complete: true},
		{name: "a replay known only by the loader's sample", events: done,
			sample: &event.Progress{Service: "loader", Mailbox: mbx, Pass: "replay-1", Updated: time.Now().Add(time.Hour)},
			pass:   "replay-1", kind: lifecycle.PassReplay, phase: lifecycle.Loading, complete: true},
		{name: "a replay that changed nothing keeps the verification", events: append(done, loadedN("replay-1", 0)),
			pass: "replay-1", kind: lifecycle.PassReplay, phase: lifecycle.Loaded, complete: true},
		{name: "differences found", events: []event.Outgoing{queued("p1"), loadedN("p1", 3), verifiedBy("p1", 2)},
			pass: "p1", phase: lifecycle.Verified, failed: true},
		{name: "a later verification finding nothing", events: []event.Outgoing{queued("p1"), loadedN("p1", 3), verifiedBy("p1", 2), verifiedBy("p1", 0)},
			pass: "p1", phase: lifecycle.Verified, complete: true},
		{name: "a verification before the load is not current", events: []event.Outgoing{queued("p1"), verifiedBy("p1", 2), loadedN("p1", 3)},
			pass: "p1", phase: lifecycle.Loaded},
		{name: "superseded: the newer pass", events: []event.Outgoing{queued("p1"), superseded("p1", "p2")},
			pass: "p2", phase: lifecycle.NotQueued},
	} {
		t.Run(c.name, func(t *testing.T) {
			var seen []lifecycle.Seen
			for i, o := range c.events {
				seen = append(seen, lifecycle.Seen{Seq: uint64(i + 1), Event: ev(t, o)})
			}
			// Stand sorts by sequence: hand them over in reverse.
			for i, j := 0, len(seen)-1; i < j; i, j = i+1, j-1 {
				seen[i], seen[j] = seen[j], seen[i]
			}
			var samples []event.Progress
			if c.sample != nil {
				samples = append(samples, *c.sample)
			}
			st := lifecycle.Stand(mbx, seen, samples...)
			if st.Latest.Pass != c.pass || st.Kind != c.kind || st.Latest.Phase != c.phase {
				t.Errorf("newest pass %q kind %q phase %s, want %q %q %s", st.Latest.Pass, st.Kind, st.Latest.Phase, c.pass, c.kind, c.phase)
			}
			if st.Complete() != c.complete || st.VerificationFailed() != c.failed {
				t.Errorf("complete %v verification failed %v, want %v %v", st.Complete(), st.VerificationFailed(), c.complete, c.failed)
			}
		})
	}
}

func TestPassKindIsNamedByThePrefix(t *testing.T) {
	for pass, kind := range map[string]string{"delta-acme-7": lifecycle.PassDelta, "replay-X1": lifecycle.PassReplay,
		"retry-X2": lifecycle.PassRetry, "AbC123": "", "deltaX": ""} {
		if got := lifecycle.PassKind(pass); got != kind {
			t.Errorf("PassKind(%q) = %q, want %q", pass, got, kind)
		}
	}
}
