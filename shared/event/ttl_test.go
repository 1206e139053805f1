package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
)

func TestTTLRestoredIsKeyedByTheDomainAndIdentifiedByItsSerial(t *testing.T) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	d := event.DNSTTLRestoredData{Serial: 9, TTL: 3600, From: 300, RestoredAt: at, Servers: []string{"127.0.0.1:53"}}
	o := event.TTLRestored("Acme.test.", d)
	if o.Type != event.DNSTTLRestored || o.Key != "Acme.test" || o.ID != "dns.ttl_restored:Acme.test:9" {
		t.Errorf("outgoing %+v, want type dns.ttl_restored, key without the dot, id of the serial", o)
	}
	env, err := o.Envelope("dnsctl", at)
	if err != nil {
		t.Fatal(err)
	}
	var back event.DNSTTLRestoredData
	if err := json.Unmarshal(env.Data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Serial != 9 || back.TTL != 3600 || back.From != 300 || !back.RestoredAt.Equal(at) || len(back.Servers) != 1 {
		t.Errorf("round trip gave %+v, want %+v", back, d)
	}
	if want := `{"serial":9,"ttl":3600,"from":300,"restored_at":"2026-12-06T04:00:00Z","servers":["127.0.0.1:53"]}`; string(env.Data) != want {
		t.Errorf("data %s, want %s", env.Data, want)
	}
}
