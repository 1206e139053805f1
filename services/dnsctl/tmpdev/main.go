package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mailferry/mailferry/services/dnsctl/cli"
)

func main() {
	if err := cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mailferry:", err)
		os.Exit(1)
	}
}
