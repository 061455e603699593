package rundir_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/infonce/infonce/rundir"
)

// A run writes a metrics line per logged step; a reader gets the loss of
// every step, the line written last winning for a step logged twice.
func Example() {
	run, err := os.MkdirTemp("", "run")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(run)
	w, err := rundir.CreateMetrics(run, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range []rundir.Metric{{Step: 0, Loss: 2.0}, {Step: 1, Loss: 1.7}, {Step: 1, Loss: 1.5}} {
		if err := w.Write(m); err != nil {
			fmt.Println(err)
		}
	}
	w.Close()
	ms, truncated, err := rundir.ReadMetrics(run)
	fmt.Println(len(ms), "lines,", truncated, "torn, err", err)
	fmt.Println(rundir.Losses(ms))
	// Output:
	// 3 lines, 0 torn, err <nil>
	// map[0:2 1:1.5]
}

// A run killed while writing its last line leaves it torn: it is dropped.
func ExampleDecodeMetrics() {
	in := `{"step":0,"loss":2}` + "\n" + `{"step":1,"lo`
	ms, truncated, err := rundir.DecodeMetrics(strings.NewReader(in))
	fmt.Println(len(ms), truncated, err)
	// Output: 1 1 <nil>
}
