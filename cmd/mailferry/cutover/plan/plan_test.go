package plan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	dnsplan "github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/job"
)

func TestMeasureDividesByTheTimeAnyPassWasRunning(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name       string
		passes     []passTimes
		wantSource string
		wantBps    float64
		wantSecs   float64
		// wantOne is one mailbox's byte rate.
		wantOne float64
	}{
		{"no passes: the default", nil, SourceDefault, DefaultBytesPerSecond, 0, DefaultBytesPerSecond / DefaultMailboxShare},
		{"one pass from extracting to loaded", []passTimes{{queued: at(0), extracting: at(10), loaded: at(20), bytes: 10e6, appended: 100}},
			SourceMeasured, 1e6, 10, 1e6},
		{"queued when the extracting event is gone", []passTimes{{queued: at(0), loaded: at(20), bytes: 10e6, appended: 100}},
			SourceMeasured, 5e5, 20, 5e5},
		{"overlapping passes count their union once", []passTimes{
			{extracting: at(0), loaded: at(10), bytes: 10e6, appended: 100},
			{extracting: at(5), loaded: at(10), bytes: 10e6, appended: 100},
			{extracting: at(30), loaded: at(40), bytes: 20e6, appended: 100},
		}, SourceMeasured, 2e6, 20, 1.6e6},
		{"passes that moved nothing are left out", []passTimes{
			{extracting: at(0), loaded: at(10), bytes: 10e6, appended: 100},
			{extracting: at(10), loaded: at(1000)},
		}, SourceMeasured, 1e6, 10, 1e6},
		{"too few bytes: the default", []passTimes{{extracting: at(0), loaded: at(10), bytes: 1000, appended: 1}}, SourceDefault, DefaultBytesPerSecond, 0, DefaultBytesPerSecond / DefaultMailboxShare},
		{"a pass never loaded is left out", []passTimes{{extracting: at(0), bytes: 10e6, appended: 100}}, SourceDefault, DefaultBytesPerSecond, 0, DefaultBytesPerSecond / DefaultMailboxShare},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := map[passKey]*passTimes{}
			for i := range tt.passes {
				in[passKey{"m", string(rune('a' + i))}] = &tt.passes[i]
			}
			got := measure(in)
			if got.Source != tt.wantSource || got.BytesPerSecond != tt.wantBps || got.MailboxBytesPerSecond != tt.wantOne ||
				(tt.wantSource == SourceMeasured && got.Seconds != tt.wantSecs) {
				t.Errorf("got %+v; want %s at %v B/s over %v s, %v B/s per mailbox", got, tt.wantSource, tt.wantBps, tt.wantSecs, tt.wantOne)
			}
			if got.Note == "" {
				t.Error("no note says how the throughput was obtained")
			}
		})
	}
}

func TestEstimateIsTheLongerOfBytesAndMessages(t *testing.T) {
	th := Throughput{BytesPerSecond: 1e6, MessagesPerSecond: 100}
	for _, tc := range []struct {
		bytes, messages int64
		want            float64
	}{
		{10e6, 100, 10},   // large messages: bandwidth
		{1e6, 1000, 10},   // small messages: round trips
		{0, 0, 0},         // nothing to copy
		{1_500_000, 1, 2}, // rounded to the second
	} {
		if got := th.Estimate(tc.bytes, tc.messages); got != tc.want {
			t.Errorf("Estimate(%d, %d) = %v; want %v", tc.bytes, tc.messages, got, tc.want)
		}
	}
}

type fakeDNS struct{ got []string }

func (f *fakeDNS) Plan(_ context.Context, domains []string, store bool) (*dnsctl.PlanReport, error) {
	if store {
		return nil, errors.New("a dry run must not store its plan")
	}
	f.got = domains
	return &dnsctl.PlanReport{Domains: []dnsplan.Domain{
		{Domain: "acme.test.", Action: dnsplan.Switch, Serial: 7, OldTTL: 300},
		dnsplan.Skipped("beta.test.", dnsplan.CodeExternal, "mail is hosted elsewhere"),
	}}, nil
}

type fakePhases []campaign.Domain

func (f fakePhases) List(context.Context, string) ([]campaign.Domain, error) { return f, nil }

func TestMakeGroupsMailboxesByLowerCaseDomainWithDNSAndPhases(t *testing.T) {
	boxes := []job.Mailbox{{SourceUser: "b@Beta.Test"}, {SourceUser: "a2@acme.test"}, {SourceUser: "a1@ACME.test."}}
	read := func(_ context.Context, _ *config.Config, mb job.Mailbox) Mailbox {
		switch mb.SourceUser {
		case "b@Beta.Test":
			return Mailbox{Mailbox: mb.SourceUser, Error: "log in refused"}
		case "a2@acme.test":
			return Mailbox{Mailbox: mb.SourceUser, Folders: 2, Messages: 10, BytesEstimated: true}
		}
		return Mailbox{Mailbox: mb.SourceUser, Folders: 3, Messages: 5, Bytes: 5000}
	}
	dns := &fakeDNS{}
	p, err := Make(context.Background(), Options{Mailboxes: boxes, Concurrency: 2, Read: read, DNS: dns,
		Phases:     fakePhases{{Domain: "acme.test", Phase: campaign.Failed, Stopped: campaign.Draining, Reason: "boom"}},
		Throughput: Default(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Domains) != 2 || p.Domains[0].Domain != "acme.test" || p.Domains[1].Domain != "beta.test" {
		t.Fatalf("domains %+v; want acme.test and beta.test", p.Domains)
	}
	if strings.Join(dns.got, ",") != "acme.test.,beta.test." {
		t.Errorf("dnsctl asked about %v", dns.got)
	}
	acme, beta := p.Domains[0], p.Domains[1]
	if acme.Messages != 15 || acme.Folders != 5 || acme.Bytes != 5000+10*DefaultMeanMessageBytes || !acme.BytesEstimated {
		t.Errorf("acme.test %+v; want 15 messages in 5 folders, 10 of them at the mean size", acme)
	}
	if acme.Phase != "failed in draining: boom" || beta.Phase != "" {
		t.Errorf("phases %q, %q; want acme.test's from the campaign, none for beta.test", acme.Phase, beta.Phase)
	}
	if acme.DNS.Action != ActionSwitch || acme.DNS.CampaignSkip() != nil {
		t.Errorf("acme.test dns %+v; want switched", acme.DNS)
	}
	if s := beta.DNS.CampaignSkip(); s == nil || s.SkipCode != dnsplan.CodeExternal || beta.DNS.Line() != "skipped (external): mail is hosted elsewhere" {
		t.Errorf("beta.test dns %+v (%q); want skipped as external", beta.DNS, beta.DNS.Line())
	}
	if beta.Failed != 1 || p.Totals.Failed != 1 || len(p.Failed()) != 1 || p.Totals.Mailboxes != 3 || p.Totals.ToSwitch != 1 {
		t.Errorf("totals %+v, beta %+v; want 1 of 3 failed, 1 to switch", p.Totals, beta)
	}
}

func TestADomainTakesAtLeastItsLargestMailbox(t *testing.T) {
	read := func(_ context.Context, _ *config.Config, mb job.Mailbox) Mailbox {
		if mb.SourceUser == "big@acme.test" {
			return Mailbox{Mailbox: mb.SourceUser, Folders: 1, Messages: 1, Bytes: 100}
		}
		return Mailbox{Mailbox: mb.SourceUser, Folders: 1, Messages: 1, Bytes: 10}
	}
	p, err := Make(context.Background(), Options{
		Mailboxes: []job.Mailbox{{SourceUser: "big@acme.test"}, {SourceUser: "small@acme.test"}, {SourceUser: "x@beta.test"}},
		Read:      read, Log: zerolog.Nop(),
		Throughput: Throughput{BytesPerSecond: 100, MailboxBytesPerSecond: 10, MeanMessageBytes: 1, Source: SourceMeasured},
	})
	if err != nil {
		t.Fatal(err)
	}
	// acme.test: 110 bytes in all take 1 s, its big mailbox alone 10 s.
	if got := p.Domains[0].EstimateSeconds; got != 10 {
		t.Errorf("acme.test estimated %v s; want 10 (its largest mailbox at one mailbox's rate)", got)
	}
	if got := p.Domains[1].EstimateSeconds; got != 1 {
		t.Errorf("beta.test estimated %v s; want 1", got)
	}
	if p.Totals.EstimateSeconds != 10 {
		t.Errorf("total estimated %v s; want 10", p.Totals.EstimateSeconds)
	}
}
