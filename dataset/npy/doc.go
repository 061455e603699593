// Package npy reads and writes NumPy .npy arrays (format versions 1.0, 2.0
// and 3.0): a magic string, a header that is a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }, and the
// data. Only little-endian numbers in C order are accepted: float32
// (<f4), float64 (<f8), signed integers (|i1, <i2, <i4, <i8) and unsigned
// bytes (|u1); any other dtype, a big-endian one, or Fortran order is
// refused with an error that says so.
//
// Read decodes an array; Array.Float32 converts its values for a sample's
// action or state. Write encodes an array of any of the accepted types.
package npy
