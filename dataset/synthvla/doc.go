// Package synthvla generates a procedural tabletop manipulation data set.
package synthvla
