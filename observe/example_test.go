package observe_test

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/infonce/infonce/observe"
	"github.com/infonce/infonce/worker"
)

// A worker of four ranks reports one step to its observer; /metrics then
// shows the samples, the all-reduce traffic of its 4 MB gradient buffer and
// the bus bandwidth 2(n−1)/n · S/t, and /healthz the step.
func ExampleWorker() {
	reg := observe.NewRegistry()
	w, err := observe.NewWorker(reg, observe.WorkerOptions{Role: "worker", Batch: 512, GradientBytes: 4_000_000})
	if err != nil {
		fmt.Println(err)
		return
	}
	w.GenerationStarted(1, 2, 4)
	w.StepDone(worker.StepStats{Step: 0, Loss: 6.2, LogitScale: 14.29, LR: 1e-3,
		Times: worker.StepTimes{Forward: 20 * time.Millisecond, Reduce: 10 * time.Millisecond}}, 1, 2, 4)

	h := observe.Handler(observe.Endpoints{Gatherer: reg, Health: w.Health})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"infonce_samples_total", "infonce_allreduce_", "infonce_loss "} {
			if strings.HasPrefix(line, name) {
				fmt.Println(line)
			}
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	fmt.Print(rec.Body.String())
	// Output:
	// infonce_allreduce_algbw_bytes_per_second 4e+08
	// infonce_allreduce_busbw_bytes_per_second 6e+08
	// infonce_allreduce_bytes_total 4e+06
	// infonce_loss 6.2
	// infonce_samples_total 512
	// {
	//   "role": "worker",
	//   "status": "training",
	//   "generation": 1,
	//   "step": 1,
	//   "rank": 2,
	//   "world": 4,
	//   "loss": 6.2
	// }
}

// The bus bandwidth of a ring all-reduce of 100 MB that took 50 ms on
// eight ranks.
func ExampleBandwidth() {
	algbw, busbw := observe.Bandwidth(100e6, 50*time.Millisecond, 8)
	fmt.Printf("algbw %.2f GB/s, busbw %.2f GB/s\n", algbw/1e9, busbw/1e9)
	// Output:
	// algbw 2.00 GB/s, busbw 3.50 GB/s
}
