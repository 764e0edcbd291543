package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/plexus-chat/plexus/internal/config"
	"github.com/plexus-chat/plexus/internal/storage"
	"github.com/plexus-chat/plexus/signalling"
)

// userCommands are the subcommands of `plexus user`.
var userCommands = []command{
	{name: "add", summary: "create an account directly in the database", run: runUserAdd},
}

const userAddUsage = `Usage: plexus user add NAME [flags]

Creates the account @NAME:<server name> directly in the database; the server
may be running or not. NAME is lower-cased. Without --password a random
password is generated and printed.

Flags:
  --password P        the account's password
  --admin             make the account a server admin
  --config FILE       read --data, --db and --server-name from the serve config file
  --data DIR          data folder holding the SQLite database (default "./plexus-data")
  --db URL            postgres://... database instead of SQLite
  --server-name NAME  the server name user IDs are made with (default "localhost:8008")
`

// runUserAdd is `plexus user add`. It exits 2 on bad usage and 1 when the
// account cannot be made (a taken or invalid name, an unreachable
// database).
func runUserAdd(ctx context.Context, std stdio, args []string) int {
	fs := flag.NewFlagSet("plexus user add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	password := fs.String("password", "", "")
	admin := fs.Bool("admin", false, "")
	// The storage and naming flags are serve's: they are handed to
	// config.Parse so that they mean, and are checked, exactly the same.
	shared := []string{"config", "data", "db", "server-name"}
	for _, name := range shared {
		fs.String(name, "", "")
	}
	// flag stops at the first argument that is not a flag; NAME may come
	// before or after the flags, so parse around it.
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(std.stdout, userAddUsage)
				return exitOK
			}
			fmt.Fprintf(std.stderr, "plexus user add: %v\n\n%s", err, userAddUsage)
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) != 1 {
		fmt.Fprintf(std.stderr, "plexus user add: want exactly one NAME, got %d\n\n%s", len(names), userAddUsage)
		return exitUsage
	}
	var cfgArgs []string
	fs.Visit(func(f *flag.Flag) {
		for _, name := range shared {
			if f.Name == name {
				cfgArgs = append(cfgArgs, "--"+name+"="+f.Value.String())
			}
		}
	})
	cfg, err := config.Parse(cfgArgs, io.Discard)
	if err != nil {
		fmt.Fprintf(std.stderr, "plexus user add: %v\n", err)
		return exitUsage
	}

	generated := *password == ""
	if generated {
		var b [18]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintf(std.stderr, "plexus user add: %v\n", err)
			return exitFailure
		}
		*password = base64.RawURLEncoding.EncodeToString(b[:])
	}

	db, err := storage.Open(ctx, cfg.DB, cfg.DataDir)
	if err != nil {
		fmt.Fprintf(std.stderr, "plexus user add: %v\n", err)
		return exitFailure
	}
	defer db.Close()
	userID, err := signalling.AddUser(ctx, db, cfg.ServerName, names[0], *password, *admin)
	if err != nil {
		fmt.Fprintf(std.stderr, "plexus user add: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(std.stdout, "created %s\n", userID)
	if generated {
		fmt.Fprintf(std.stdout, "password: %s\n", *password)
	}
	return exitOK
}
