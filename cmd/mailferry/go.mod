module github.com/mailferry/mailferry/cmd/mailferry

go 1.26.0

replace (
	github.com/mailferry/mailferry/services/auth => ../../services/auth
	github.com/mailferry/mailferry/services/dnsctl => ../../services/dnsctl
	github.com/mailferry/mailferry/services/extractor => ../../services/extractor
	github.com/mailferry/mailferry/services/loader => ../../services/loader
	github.com/mailferry/mailferry/shared => ../../shared
)
