// Package sources registers every source of the project with
// dataset.Open: importing it for its side effect,
//
//	import _ "github.com/infonce/infonce/dataset/sources"
//
// makes dataset.Open accept folder:DIR, csv:FILE, wds:PATTERN and
// rlds:DIR besides the built-in mnist, idx:DIR and synthetic[:N].
package sources

import (
	_ "github.com/infonce/infonce/dataset/folder"   // folder:DIR
	_ "github.com/infonce/infonce/dataset/manifest" // csv:FILE
	_ "github.com/infonce/infonce/dataset/rlds"     // rlds:DIR
	_ "github.com/infonce/infonce/dataset/wds"      // wds:PATTERN
)
