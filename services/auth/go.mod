module github.com/mailferry/mailferry/services/auth

go 1.26.0

replace github.com/mailferry/mailferry/shared => ../../shared
