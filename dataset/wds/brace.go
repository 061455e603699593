package wds

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxExpansion bounds the number of names a pattern expands to.
const MaxExpansion = 1 << 20

// Expand expands the braces of pattern, left to right: "{0..3}" and
// "{000..010}" are ranges (ascending or descending; zero-padded to the
// width of the longer bound when a bound starts with 0), "{a,b}" lists, nested
// braces inside lists are expanded too. Text without braces is returned
// as it is.
func Expand(pattern string) ([]string, error) {
	out, err := expand(pattern, 0)
	if err != nil {
		return nil, fmt.Errorf("wds: pattern %q: %w", pattern, err)
	}
	return out, nil
}

func expand(p string, depth int) ([]string, error) {
	if depth > 16 {
		return nil, fmt.Errorf("braces nested deeper than 16")
	}
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.IndexByte(p, '}') >= 0 {
			return nil, fmt.Errorf("'}' without '{'")
		}
		return []string{p}, nil
	}
	if strings.IndexByte(p[:open], '}') >= 0 {
		return nil, fmt.Errorf("'}' without '{'")
	}
	// Find the matching close brace and the top-level commas.
	level, close := 0, -1
	var commas []int
	for i := open; i < len(p) && close < 0; i++ {
		switch p[i] {
		case '{':
			level++
		case '}':
			level--
			if level == 0 {
				close = i
			}
		case ',':
			if level == 1 {
				commas = append(commas, i)
			}
		}
	}
	if close < 0 {
		return nil, fmt.Errorf("'{' without '}'")
	}
	prefix, body, suffix := p[:open], p[open+1:close], p[close+1:]
	var alts []string
	if len(commas) == 0 {
		lo, hi, ok := strings.Cut(body, "..")
		if !ok {
			return nil, fmt.Errorf("{%s} is neither a range a..b nor a list a,b", body)
		}
		r, err := numRange(lo, hi)
		if err != nil {
			return nil, err
		}
		alts = r
	} else {
		start := open + 1
		for _, c := range append(commas, close) {
			sub, err := expand(p[start:c], depth+1)
			if err != nil {
				return nil, err
			}
			alts = append(alts, sub...)
			start = c + 1
		}
	}
	rest, err := expand(suffix, depth+1)
	if err != nil {
		return nil, err
	}
	if len(alts)*len(rest) > MaxExpansion {
		return nil, fmt.Errorf("expands to more than %d names", MaxExpansion)
	}
	out := make([]string, 0, len(alts)*len(rest))
	for _, a := range alts {
		for _, r := range rest {
			out = append(out, prefix+a+r)
		}
	}
	return out, nil
}

func numRange(lo, hi string) ([]string, error) {
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 0 || b < 0 || strings.HasPrefix(lo, "+") || strings.HasPrefix(hi, "+") {
		return nil, fmt.Errorf("range %s..%s: want non-negative integers", lo, hi)
	}
	step := 1
	if b < a {
		step = -1
	}
	if n := (b-a)*step + 1; n > MaxExpansion {
		return nil, fmt.Errorf("range %s..%s has more than %d values", lo, hi, MaxExpansion)
	}
	width := 0
	if (len(lo) > 1 && lo[0] == '0') || (len(hi) > 1 && hi[0] == '0') {
		width = max(len(lo), len(hi))
	}
	var out []string
	for v := a; ; v += step {
		s := strconv.Itoa(v)
		if len(s) < width {
			s = strings.Repeat("0", width-len(s)) + s
		}
		out = append(out, s)
		if v == b {
			break
		}
	}
	return out, nil
}
