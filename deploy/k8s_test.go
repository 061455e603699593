package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// k8sObject is one decoded manifest.
type k8sObject struct {
	file string
	kind string
	obj  any
}

// decodeManifests reads every document of the YAML files in dir and
// decodes each strictly into the Kubernetes API type of its kind: an
// unknown or misspelt field, a duplicate field, a wrong type or a
// malformed quantity is an error. What it does not check is what only an
// API server checks (required fields, value ranges, admission).
func decodeManifests(t *testing.T, dir string, files []string) []k8sObject {
	t.Helper()
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "batch/v1 Job":
				obj = &batchv1.Job{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, head.Kind, err)
			}
			objs = append(objs, k8sObject{file: f, kind: head.Kind, obj: obj})
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestKubernetesManifests validates deploy/k8s: the kustomization lists
// every manifest, each decodes strictly into its API type, and the
// objects fit together (selectors, named ports, volumes, environment
// references, and every INFONCE_ variable is a flag of the command the
// container runs).
func TestKubernetesManifests(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy", "k8s")
	var kust struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Labels     []struct {
			Pairs map[string]string `json:"pairs"`
		} `json:"labels"`
	}
	kb, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(kb, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if kust.Kind != "Kustomization" || kust.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Errorf("kustomization.yaml: %s %s", kust.APIVersion, kust.Kind)
	}
	all, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	listed := map[string]bool{}
	for _, r := range kust.Resources {
		listed[r] = true
	}
	var files []string
	for _, p := range all {
		f := filepath.Base(p)
		switch {
		case f == "kustomization.yaml":
		case strings.HasSuffix(f, ".example.yaml"):
			files = append(files, f) // decoded, not applied
		case !listed[f]:
			t.Errorf("%s is not a resource of kustomization.yaml", f)
		}
	}
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
		files = append(files, r)
	}
	sort.Strings(files)
	objs := decodeManifests(t, dir, files)

	flags := commandFlags(t)
	pvcs := map[string]bool{}
	var pods []struct {
		name   string
		labels map[string]string
		spec   corev1.PodSpec
		role   string
	}
	var services []*corev1.Service
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.PersistentVolumeClaim:
			pvcs[v.Name] = true
		case *corev1.Service:
			services = append(services, v)
		case *appsv1.Deployment:
			if v.Spec.Selector == nil || !selects(v.Spec.Selector.MatchLabels, v.Spec.Template.Labels) {
				t.Errorf("Deployment %s: the selector does not select its pod template", v.Name)
			}
			pods = append(pods, struct {
				name   string
				labels map[string]string
				spec   corev1.PodSpec
				role   string
			}{"Deployment " + v.Name, v.Spec.Template.Labels, v.Spec.Template.Spec, "coordinator"})
		case *batchv1.Job:
			if v.Spec.CompletionMode == nil || *v.Spec.CompletionMode != batchv1.IndexedCompletion {
				t.Errorf("Job %s is not an Indexed Job", v.Name)
			}
			if v.Spec.Completions == nil || v.Spec.Parallelism == nil || *v.Spec.Completions != *v.Spec.Parallelism {
				t.Errorf("Job %s: completions and parallelism must be set and equal (one pod per worker)", v.Name)
			}
			if rp := v.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
				t.Errorf("Job %s: restartPolicy %q (a Job takes OnFailure or Never)", v.Name, rp)
			}
			pods = append(pods, struct {
				name   string
				labels map[string]string
				spec   corev1.PodSpec
				role   string
			}{"Job " + v.Name, v.Spec.Template.Labels, v.Spec.Template.Spec, "worker"})
		}
	}
	if len(pods) != 2 {
		t.Fatalf("want a coordinator Deployment and a worker Job, found %d workloads", len(pods))
	}
	headless := false
	for _, s := range services {
		var sel []int
		for i, p := range pods {
			if selects(s.Spec.Selector, p.labels) {
				sel = append(sel, i)
			}
		}
		if len(sel) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(sel))
			continue
		}
		p := pods[sel[0]]
		for _, port := range s.Spec.Ports {
			if port.TargetPort.StrVal != "" && !hasPort(p.spec, port.TargetPort.StrVal, port.Protocol) {
				t.Errorf("Service %s: targetPort %q (%s) is no container port of %s", s.Name, port.TargetPort.StrVal, port.Protocol, p.name)
			}
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = true
			if p.spec.Subdomain != s.Name {
				t.Errorf("headless Service %s: the worker pods' subdomain is %q", s.Name, p.spec.Subdomain)
			}
		}
	}
	if !headless {
		t.Error("no headless Service for the workers")
	}
	for _, p := range pods {
		vols := map[string]bool{}
		for _, v := range p.spec.Volumes {
			vols[v.Name] = true
			if v.PersistentVolumeClaim != nil && !pvcs[v.PersistentVolumeClaim.ClaimName] {
				t.Errorf("%s: volume %s claims %q, which no manifest defines", p.name, v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		}
		if sc := p.spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Errorf("%s: pods must run as the image's user 65532", p.name)
		}
		for _, c := range p.spec.Containers {
			if c.Image != "infonce:latest" {
				t.Errorf("%s: image %q, want the one `make image` builds (infonce:latest; rename it in kustomization.yaml)", p.name, c.Image)
			}
			if len(c.Args) == 0 || c.Args[0] != p.role {
				t.Errorf("%s: args %v, want the %s command", p.name, c.Args, p.role)
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("%s: mount of an undefined volume %s", p.name, m.Name)
				}
			}
			for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if pr != nil && pr.HTTPGet != nil && pr.HTTPGet.Port.StrVal != "" && !hasPort(p.spec, pr.HTTPGet.Port.StrVal, corev1.ProtocolTCP) {
					t.Errorf("%s: probe on an undefined port %q", p.name, pr.HTTPGet.Port.StrVal)
				}
			}
			defined := map[string]bool{}
			for _, e := range c.Env {
				for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(e.Value, -1) {
					if !defined[ref[1]] {
						t.Errorf("%s: %s refers to $(%s), which is not defined before it", p.name, e.Name, ref[1])
					}
				}
				defined[e.Name] = true
				checkEnvFlag(t, flags, p.role, p.name, e.Name)
			}
		}
	}
}

// TestComposeFileEnvironment checks docker-compose.yml without Docker:
// every INFONCE_ variable of a service is a flag of the command it runs.
func TestComposeFileEnvironment(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Command     []string       `json:"command"`
			Environment map[string]any `json:"environment"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	flags := commandFlags(t)
	for _, name := range []string{"coordinator", "worker"} {
		s, ok := f.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no service %s", name)
		}
		if len(s.Command) == 0 || s.Command[0] != name {
			t.Errorf("service %s runs %v, want the %s command", name, s.Command, name)
		}
		if len(s.Environment) == 0 {
			t.Errorf("service %s has no environment", name)
		}
		for k := range s.Environment {
			checkEnvFlag(t, flags, name, "service "+name, k)
		}
	}
}

func checkEnvFlag(t *testing.T, flags map[string]map[string]bool, role, where, env string) {
	t.Helper()
	if !strings.HasPrefix(env, "INFONCE_") {
		return
	}
	flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "INFONCE_")), "_", "-")
	if flags[role][flag] {
		return
	}
	t.Errorf("%s: %s is no flag of `infonce %s` (no --%s)", where, env, role, flag)
}

// commandFlags builds the binary and lists the flags of its coordinator
// and worker commands from their -h output.
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	re := regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`)
	flags := map[string]map[string]bool{}
	for _, cmd := range []string{"coordinator", "worker"} {
		out, _ := tryRun(ctx, withEnv(nil), "", bin, cmd, "-h")
		flags[cmd] = map[string]bool{}
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			flags[cmd][m[1]] = true
		}
		if len(flags[cmd]) < 5 {
			t.Fatalf("infonce %s -h lists %d flags:\n%s", cmd, len(flags[cmd]), out)
		}
	}
	return flags
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(spec corev1.PodSpec, name string, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if p.Name == name && pp == proto {
				return true
			}
		}
	}
	return false
}
