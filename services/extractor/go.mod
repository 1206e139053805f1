module github.com/mailferry/mailferry/services/extractor

go 1.26.0

replace github.com/mailferry/mailferry/shared => ../../shared
