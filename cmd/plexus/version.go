package main

import (
	"context"
	"fmt"
	"runtime"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func runVersion(_ context.Context, std stdio, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(std.stderr, "plexus version: takes no arguments")
		return exitUsage
	}
	fmt.Fprintf(std.stdout, "plexus %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
