package dataset

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadTemplates reads a file of caption templates, one a line, with {}
// where the class name goes ("a photo of a {}."), as OpenCLIP's zero-shot
// templates are written. Blank lines and lines starting with # are skipped;
// a template without {} is an error, as is a file without templates.
func ReadTemplates(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: templates: %w", err)
	}
	return ParseTemplates(data, path)
}

// ParseTemplates parses the text of a templates file; name is used in
// messages.
func ParseTemplates(data []byte, name string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "{}") {
			return nil, fmt.Errorf("dataset: templates %s:%d: %q has no {} for the class name", name, n, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dataset: templates %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dataset: templates %s: no template (want lines with {} for the class name)", name)
	}
	return out, nil
}

// NewTemplateCaptioner returns the captioner of classes (names in label
// order) through templates, which use {} or {class} for the class name,
// {a} for its article and {digit} for the label. Nil templates mean the
// built-in generic ones ("a photo of a {class}").
func NewTemplateCaptioner(classes, templates []string) *Captioner {
	if templates == nil {
		templates = classTemplates
	}
	c := &Captioner{
		classes:   len(classes),
		templates: len(templates),
		text:      make([]string, len(classes)*len(templates)),
		id:        make([]int32, len(classes)*len(templates)),
	}
	ids := make(map[string]int32)
	for k, name := range classes {
		r := strings.NewReplacer("{}", name, "{class}", name, "{digit}", strconv.Itoa(k), "{a}", article(name))
		for j, t := range templates {
			s := r.Replace(t)
			id, ok := ids[s]
			if !ok {
				id = int32(len(c.corpus))
				ids[s] = id
				c.corpus = append(c.corpus, s)
			}
			c.text[k*c.templates+j] = s
			c.id[k*c.templates+j] = id
		}
	}
	return c
}

// ClassCaption is the caption of sample (of class label) that a source
// fills into Sample.Text: template Pick(seed, 0, sample). A caller that
// wants another caption each epoch uses c.Pick(seed, epoch, sample).
func ClassCaption(c *Captioner, seed uint64, label, sample int) string {
	if c == nil || c.templates == 0 || label < 0 || label >= c.classes {
		return ""
	}
	return c.Text(label, c.Pick(seed, 0, sample))
}
