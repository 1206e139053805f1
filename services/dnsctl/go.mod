module github.com/mailferry/mailferry/services/dnsctl

go 1.26.0

replace github.com/mailferry/mailferry/shared => ../../shared

require (
	github.com/mailferry/mailferry/shared v0.0.0-00010101000000-000000000000
	github.com/miekg/dns v1.1.73
	github.com/nats-io/nats.go v1.55.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
