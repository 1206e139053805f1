package dnsctl

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
)

// The daemon's /readyz asks the primary a question: BIND refuses the
// root's SOA, which is an answer; nothing listening is not.
func TestThePrimaryIsReadyWhenItAnswersAnything(t *testing.T) {
	srv := bindtest.StartT(t, bindtest.Options{Zones: zonegen.Support()})
	if err := answers(context.Background(), srv.Primary.Addr); err != nil {
		t.Errorf("BIND at %s: %v, want ready", srv.Primary.Addr, err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silent := pc.LocalAddr().String() // takes queries, answers none
	defer pc.Close()
	if err := answers(context.Background(), silent); err == nil || !strings.Contains(err.Error(), silent) {
		t.Errorf("a server that does not answer: %v, want an error naming %s", err, silent)
	}
}
