package dnsctl

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/event"
)

// downPublisher is a broker that takes no event.
type downPublisher struct{ sent []event.Outgoing }

var errDown = errors.New("broker down")

func (p *downPublisher) Publish(_ context.Context, o event.Outgoing) error {
	p.sent = append(p.sent, o)
	return errDown
}

func TestAnOutcomeNobodyHeardOfIsReported(t *testing.T) {
	ctx := context.Background()
	p := &downPublisher{}
	e := &Engine{Events: p, Log: zerolog.Nop()}
	res := e.failed(ctx, "customer.test.", "apply", errors.New("REFUSED"))
	if res.Outcome != Failed || !strings.Contains(res.Error, "REFUSED") || !strings.Contains(res.Error, "dns.failed not published") {
		t.Errorf("result = %+v, want the failure and that it was not announced", res)
	}
	if len(p.sent) != 1 || p.sent[0].Key != "customer.test" || p.sent[0].Type != event.DNSFailed {
		t.Errorf("sent %+v, want one dns.failed keyed by the domain without its dot", p.sent)
	}
	if err := RequestCutover(ctx, p, "customer.test"); !errors.Is(err, errDown) {
		t.Errorf("cutover request err = %v, want the publish error", err)
	}
}
