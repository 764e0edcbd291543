package storage

import (
	"fmt"
	"testing"
)

func stateOf(n int) StateMap {
	m := StateMap{}
	for i := range n {
		m[StateKey{"t", fmt.Sprint(i)}] = "$e"
	}
	return m
}

func TestGroupCacheEvictsByEntries(t *testing.T) {
	c := newGroupCache(10)
	c.put(1, stateOf(4))        // weight 5
	c.put(2, stateOf(3))        // weight 4: total 9
	if _, ok := c.get(1); !ok { // 1 is now most recent
		t.Fatal("group 1 missing")
	}
	c.put(3, stateOf(1)) // weight 2: total 11 > 10, evicts 2 (least recent)
	tests := []struct {
		id   int64
		want bool
	}{{1, true}, {2, false}, {3, true}}
	for _, tc := range tests {
		if _, ok := c.get(tc.id); ok != tc.want {
			t.Errorf("get(%d) present = %v, want %v", tc.id, ok, tc.want)
		}
	}
	if groups, entries := c.len(); groups != 2 || entries != 7 {
		t.Errorf("len = %d groups, %d entries; want 2, 7", groups, entries)
	}
	c.put(4, stateOf(50)) // larger than the whole budget: not cached
	if _, ok := c.get(4); ok {
		t.Error("an oversized group was cached")
	}
	c.put(5, StateMap{}) // empty groups still cost one
	if _, entries := c.len(); entries != 8 {
		t.Errorf("entries = %d after an empty group, want 8", entries)
	}
}

func TestOverlayPublishesOnlyOnRequest(t *testing.T) {
	shared := newGroupCache(100)
	shared.put(1, stateOf(1))
	o := &overlay{shared: shared}
	o.put(2, stateOf(2))
	if _, ok := o.get(1); !ok {
		t.Error("overlay does not see the shared cache")
	}
	if _, ok := o.get(2); !ok {
		t.Error("overlay does not see its own pending group")
	}
	if _, ok := shared.get(2); ok {
		t.Error("pending group leaked into the shared cache before publish")
	}
	o.publish()
	if _, ok := shared.get(2); !ok {
		t.Error("publish did not reach the shared cache")
	}
}

func TestRecentGroupsBounded(t *testing.T) {
	r := recentGroups{max: 3}
	r.add("$none", groupRef{}) // no group: never remembered
	if _, ok := r.get("$none"); ok {
		t.Error("remembered an event without a group")
	}
	for i := range 5 {
		r.add(fmt.Sprint(i), groupRef{id: int64(i + 1)})
	}
	if len(r.m) > 3 {
		t.Errorf("holds %d entries, bound 3", len(r.m))
	}
	if ref, ok := r.get("4"); !ok || ref.id != 5 {
		t.Errorf("latest entry = %+v, %v", ref, ok)
	}
}
