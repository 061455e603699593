package tfrecord_test

import (
	"bytes"
	"fmt"

	"github.com/infonce/infonce/dataset/tfrecord"
)

// Write two tf.train.Example records and read them back.
func Example() {
	var buf bytes.Buffer
	w := tfrecord.NewWriter(&buf)
	for step := range 2 {
		ex := tfrecord.Example{
			"steps/action":               tfrecord.FloatFeature(float32(step), 0.5),
			"steps/language_instruction": tfrecord.BytesFeature([]byte("pick up the block")),
		}
		if err := w.Write(ex.Marshal()); err != nil {
			fmt.Println(err)
			return
		}
	}
	r := tfrecord.NewReader(&buf)
	for {
		data, rec, err := r.Next(nil)
		if err != nil {
			break
		}
		ex, err := tfrecord.DecodeExample(data)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("record at %d: action %v, %q\n", rec.Offset, ex["steps/action"].Floats, ex["steps/language_instruction"].Bytes[0])
	}
	// Output:
	// record at 0: action [0 0.5], "pick up the block"
	// record at 101: action [1 0.5], "pick up the block"
}
