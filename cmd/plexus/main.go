package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. A command with subs dispatches on the next
// argument, so `plexus user add` is a "user" command with an "add" sub.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, std stdio, args []string) int
	subs    []command
}

// stdio is where a command writes; tests pass buffers.
type stdio struct {
	stdout, stderr io.Writer
}

// commands is the table of top-level subcommands; add new ones here.
var commands = []command{
	{name: "serve", summary: "run the homeserver", run: runServe},
	{name: "version", summary: "print the version and the Go version", run: runVersion},
	{name: "user", summary: "manage accounts (user add)", subs: userCommands},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second Ctrl-C kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, stdio{os.Stdout, os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes the command line args (without the program name).
func run(ctx context.Context, std stdio, args []string) int {
	return dispatch(ctx, std, "plexus", commands, args)
}

func dispatch(ctx context.Context, std stdio, path string, cmds []command, args []string) int {
	if len(args) == 0 {
		usage(std.stderr, path, cmds)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(std.stdout, path, cmds)
		return exitOK
	case "-version", "--version":
		if path == "plexus" {
			args = append([]string{"version"}, args[1:]...)
		}
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		if c.subs != nil {
			return dispatch(ctx, std, path+" "+c.name, c.subs, args[1:])
		}
		return c.run(ctx, std, args[1:])
	}
	fmt.Fprintf(std.stderr, "%s: unknown command %q\n\n", path, args[0])
	usage(std.stderr, path, cmds)
	return exitUsage
}

func usage(w io.Writer, path string, cmds []command) {
	fmt.Fprintf(w, "Usage: %s <command> [arguments]\n\nCommands:\n", path)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", path)
}
