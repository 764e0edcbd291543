package config

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// applyFile applies the YAML file at path to c and returns every problem in
// it, each prefixed with file:line so the operator can find it.
//
// The file is walked as a yaml.Node rather than decoded into a struct: that
// keeps line numbers, catches duplicate and unknown keys, and lets each value
// go through the same parse function as its flag.
func applyFile(c *Config, opts []option, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("config file: %v", err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty file, or only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("%s:%d: the top level must be a mapping of key: value", path, root.Line)}
	}

	byKey := make(map[string]*option, len(opts))
	for i := range opts {
		byKey[opts[i].key] = &opts[i]
	}
	var problems []string
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		if k.Kind != yaml.ScalarNode {
			problems = append(problems, fmt.Sprintf("%s: keys must be plain names", at))
			continue
		}
		o := byKey[k.Value]
		if o == nil {
			problems = append(problems, fmt.Sprintf("%s: unknown key %q%s", at, k.Value, suggest(k.Value, opts)))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			problems = append(problems, fmt.Sprintf("%s: %s is set twice (first on line %d)", at, k.Value, first))
			continue
		}
		seen[k.Value] = k.Line
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if o.repeat && v.Kind == yaml.SequenceNode {
			problems = append(problems, applyList(c, o, path, k.Value, v)...)
			continue
		}
		if v.Kind != yaml.ScalarNode {
			problems = append(problems, fmt.Sprintf("%s: %s: want a single value, not a list or mapping", at, k.Value))
			continue
		}
		raw := v.Value
		if v.Tag == "!!null" {
			raw = "" // `db:` with nothing after it means empty
		}
		if err := o.set(c, raw); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s %s: %v", at, k.Value, o.show(raw), err))
		}
	}
	return problems
}

// applyList sets a list option from a YAML sequence of scalars.
func applyList(c *Config, o *option, path, key string, seq *yaml.Node) []string {
	var problems []string
	if err := o.set(c, ""); err != nil { // start from an empty list
		return []string{fmt.Sprintf("%s:%d: %s: %v", path, seq.Line, key, err)}
	}
	for _, item := range seq.Content {
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		at := fmt.Sprintf("%s:%d", path, item.Line)
		if item.Kind != yaml.ScalarNode {
			problems = append(problems, fmt.Sprintf("%s: %s: want a list of single values", at, key))
			continue
		}
		if err := o.add(c, item.Value); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s %s: %v", at, key, o.show(item.Value), err))
		}
	}
	return problems
}

// suggest offers the real key for the usual slips: a flag name with '-' in
// the file, or the wrong case.
func suggest(key string, opts []option) string {
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	norm = strings.TrimLeft(norm, "_")
	for _, o := range opts {
		if o.key == norm {
			return fmt.Sprintf(" (did you mean %q?)", o.key)
		}
	}
	return ""
}
