package config

import "strings"

// defineList builds a repeatable option whose field is a list: each flag
// (or each item of a YAML sequence) adds one item, parsed by parse. A flag
// given on the command line replaces the file's list; the empty text means
// an empty list, so `--x=` clears it and the default is "".
func defineList[T any](name, arg, usage string, field func(*Config) *[]T, parse func(string) (T, error)) option {
	add := func(c *Config, raw string) error {
		v, err := parse(raw)
		if err != nil {
			return err
		}
		*field(c) = append(*field(c), v)
		return nil
	}
	return option{
		name:   name,
		key:    strings.ReplaceAll(name, "-", "_"),
		arg:    arg,
		usage:  usage,
		repeat: true,
		add:    add,
		set: func(c *Config, raw string) error {
			*field(c) = nil
			if raw == "" {
				return nil
			}
			return add(c, raw)
		},
	}
}
