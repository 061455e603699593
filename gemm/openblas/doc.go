// Package openblas is an optional float32 kernel for package gemm that calls
// OpenBLAS's cblas_sgemm through cgo. It is built only with the build tag
// openblas (and cgo enabled), and needs the OpenBLAS library and headers
// (Debian: apt-get install libopenblas-dev):
//
//	go build -tags openblas ./...
//
// Under that tag package gemm selects this kernel at start-up instead of its
// own assembly kernels; without the tag this package is empty and the
// binary stays free of cgo. The package also holds the benchmark that
// compares gemm's kernels with OpenBLAS on the same shapes in one run:
//
//	go test -tags openblas -run NONE -bench . ./gemm/openblas/
//
// OpenBLAS picks its own kernel from the CPU unless OPENBLAS_CORETYPE is set;
// CoreName tells which one runs, and SetThreads sets its thread count (the
// counterpart of GOMAXPROCS for gemm's kernels).
package openblas
