package storage

import (
	"slices"
	"testing"
)

func TestRebind(t *testing.T) {
	tests := []struct {
		d    *dialect
		in   string
		want string
	}{
		{sqliteDialect, "a = ? AND b IN (?, ?)", "a = ? AND b IN (?, ?)"},
		{postgresDialect, "a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)"},
		{postgresDialect, "no params", "no params"},
	}
	for _, tc := range tests {
		if got := tc.d.rebind(tc.in); got != tc.want {
			t.Errorf("%s rebind(%q) = %q, want %q", tc.d.name, tc.in, got, tc.want)
		}
	}
}

func TestChunkAndInSizes(t *testing.T) {
	tests := []struct {
		rows, cap, chunk, in int
	}{
		{1, 128, 1, 1},
		{3, 128, 2, 4},
		{64, 128, 64, 64},
		{100, 128, 64, 128},
		{500, 128, 128, 128},
		{500, 50, 32, 128},
	}
	for _, tc := range tests {
		if got := chunkRows(tc.rows, tc.cap); got != tc.chunk {
			t.Errorf("chunkRows(%d, %d) = %d, want %d", tc.rows, tc.cap, got, tc.chunk)
		}
		if got := inSize(tc.rows); got != tc.in {
			t.Errorf("inSize(%d) = %d, want %d", tc.rows, got, tc.in)
		}
	}
}

func TestInArgsPads(t *testing.T) {
	args, take := inArgs([]string{"a", "b", "c"}, 0)
	if take != 3 || !slices.Equal(args, []any{"a", "b", "c", "c"}) {
		t.Errorf("inArgs = %v, %d", args, take)
	}
	big := make([]int64, 300)
	for i := range big {
		big[i] = int64(i)
	}
	var got []int64
	for off := 0; off < len(big); {
		args, take := inArgs(big, off)
		if len(args) > maxChunkRows {
			t.Fatalf("chunk of %d args", len(args))
		}
		for _, a := range args[:take] {
			got = append(got, a.(int64))
		}
		off += take
	}
	if !slices.Equal(got, big) {
		t.Error("chunks do not cover the input exactly once")
	}
}

func TestBulkInsertBuild(t *testing.T) {
	b := &bulkInsert{head: "INSERT INTO t (a, b) VALUES ", tail: " ON CONFLICT DO NOTHING", cols: 2}
	want := "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
	if got := b.build(2); got != want {
		t.Errorf("build(2) = %q, want %q", got, want)
	}
}

func TestIDListEncoding(t *testing.T) {
	for _, in := range [][]string{nil, {"$a"}, {"$a", `$"quoted\`, "$ü"}} {
		got, err := decodeIDs(encodeIDs(in))
		if err != nil || !slices.Equal(got, in) {
			t.Errorf("round trip %q = %q, %v", in, got, err)
		}
	}
}
