// Package config turns `plexus serve`'s command-line flags and optional YAML
// file into a validated Config.
//
// Every setting is one row of the options table (options.go): its flag name,
// placeholder, default, help text, where it lives in Config and how its text
// is parsed and checked. The same row drives the flag, the YAML key (the flag
// name with '-' replaced by '_') and the help output, so a flag and its key
// can never drift apart.
//
// Precedence, lowest first: the table's defaults, the --config file, the
// flags given on the command line. A flag given explicitly wins even when its
// value equals the default.
//
// Parse never stops at the first problem: unknown YAML keys, duplicate keys,
// and every invalid value from the file and the flags are collected and
// returned together in one *Error, one problem per line, so an operator fixes
// a broken configuration in one round trip. Only a malformed command line
// (an unknown flag) stops parsing early, because the flag package cannot go
// on past it.
//
// To add a setting (federation, TURN, SFU...): add a field to Config and one
// define(...) row to the options table, with a parse function that returns
// the typed value or an error saying what is wanted; a list setting (a
// repeatable flag, a YAML sequence) is a defineList(...) row whose parse
// function takes one item. Rows for secrets
// (passwords, shared secrets, URLs with credentials) end in .secret() so that
// their values are never echoed in error messages.
package config
