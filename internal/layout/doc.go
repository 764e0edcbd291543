// Package layout holds no code: its test reads the module's import graph and
// fails when a package reaches across the layering in DESIGN.md and
// STYLE.md, or lacks a doc.go.
package layout
