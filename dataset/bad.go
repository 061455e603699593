package dataset

import "errors"

// Reason is the reason word of a bad sample's error ("corrupt-image",
// "truncated-tar", …), or "" when err is nil or not a *BadSample: the key
// a caller counts skipped samples under.
func Reason(err error) string {
	var bad *BadSample
	if errors.As(err, &bad) {
		return bad.Reason
	}
	return ""
}
