// Package race tells the race detector about memory that the data plane
// touches out of its sight: the assembly kernels of package vec, and bytes
// that travel between ranks through the kernel's sockets or a shared
// mapping. Without the race build tag every function is empty.
package race

// Net stands for the network in the race detector's model: a send
// releases it and a receive acquires it, as package syscall does for
// read(2) and write(2). Every transport of the data plane uses the same
// word, so that what one rank wrote before it sent happens before what its
// neighbour does after it received.
var Net byte
