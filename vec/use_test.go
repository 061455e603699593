package vec

import "testing"

// Use switches every kernel to the named implementation and back; an
// unknown name is an error that changes nothing.
func TestUse(t *testing.T) {
	start := Impl()
	defer func() {
		if _, err := Use(start); err != nil {
			t.Fatal(err)
		}
	}()
	for _, k := range implementations() {
		prev, err := Use(k.name)
		if err != nil {
			t.Fatalf("Use(%q): %v", k.name, err)
		}
		if got := Impl(); got != k.name {
			t.Errorf("after Use(%q), Impl() = %q", k.name, got)
		}
		x := []float32{1, -2, 3, -4, 5, -6, 7, -8, 9}
		ReLU(x, x)
		if x[1] != 0 || x[8] != 9 {
			t.Errorf("%s: ReLU gave %v", k.name, x)
		}
		if _, err := Use(prev); err != nil {
			t.Fatalf("Use(%q) to restore: %v", prev, err)
		}
	}
	before := Impl()
	if _, err := Use("no-such-kernels"); err == nil {
		t.Error("Use of an unknown implementation succeeded")
	}
	if Impl() != before {
		t.Errorf("a failed Use changed the implementation from %q to %q", before, Impl())
	}
}
