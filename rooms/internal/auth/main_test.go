package auth

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// TestMain checks, when the whole suite ran, that every rule of every
// numbering was seen rejecting an event: each rule has a rejected case.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		for r := rule(0); r < numRules; r++ {
			for col, num := range ruleNumbers[r] {
				if num != "" && !seenRules[col][num] {
					fmt.Fprintf(os.Stderr, "no test rejects an event by rule %s (numbering %d)\n", num, col)
					code = 1
				}
			}
		}
	}
	os.Exit(code)
}
