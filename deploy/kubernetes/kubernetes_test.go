package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/modelmon/modelmon/internal/alertconfig"
	"github.com/modelmon/modelmon/internal/config"
	"github.com/modelmon/modelmon/internal/prometheustest"
)

// manifests are the parsed manifests of this directory, by kind.
type manifests struct {
	files           []string
	namespaces      []*corev1.Namespace
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	statefulSets    []*appsv1.StatefulSet
	podMonitors     []*monitoringv1.PodMonitor
	prometheusRules []*monitoringv1.PrometheusRule
}

// strict decodes a manifest into its Kubernetes type: a field the type
// does not know is an error, as `kubectl apply --validate=strict` makes it.
func strict[T any](t *testing.T, file string, doc []byte) *T {
	t.Helper()
	var v T
	require.NoError(t, yaml.UnmarshalStrict(doc, &v), file)
	return &v
}

// load parses every manifest of the directory with the Kubernetes API types
// and the prometheus-operator types, strictly.
func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	var m manifests
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, f)
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(b), -1) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(doc), &head), f)
			d := []byte(doc)
			switch head.APIVersion + " " + head.Kind {
			case "v1 Namespace":
				m.namespaces = append(m.namespaces, strict[corev1.Namespace](t, f, d))
			case "v1 ConfigMap":
				m.configMaps = append(m.configMaps, strict[corev1.ConfigMap](t, f, d))
			case "v1 Secret":
				m.secrets = append(m.secrets, strict[corev1.Secret](t, f, d))
			case "v1 Service":
				m.services = append(m.services, strict[corev1.Service](t, f, d))
			case "apps/v1 Deployment":
				m.deployments = append(m.deployments, strict[appsv1.Deployment](t, f, d))
			case "apps/v1 StatefulSet":
				m.statefulSets = append(m.statefulSets, strict[appsv1.StatefulSet](t, f, d))
			case "monitoring.coreos.com/v1 PodMonitor":
				m.podMonitors = append(m.podMonitors, strict[monitoringv1.PodMonitor](t, f, d))
			case "monitoring.coreos.com/v1 PrometheusRule":
				m.prometheusRules = append(m.prometheusRules, strict[monitoringv1.PrometheusRule](t, f, d))
			default:
				t.Fatalf("%s: unexpected %s %s", f, head.APIVersion, head.Kind)
			}
		}
	}
	require.Len(t, m.deployments, 1)
	require.Len(t, m.statefulSets, 1)
	require.Len(t, m.prometheusRules, 1)
	return m
}

// The PrometheusRule is the repository's rule files: `make kubernetes` was run.
func TestPrometheusRuleInSync(t *testing.T) {
	want, err := PrometheusRule("../..")
	require.NoError(t, err)
	got, err := os.ReadFile("prometheusrule.yaml")
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "prometheusrule.yaml differs from rules/*.rules.yml and deploy/prometheus/*.rules.yml: run `make kubernetes`")
}

// The kustomization lists every manifest of the directory, and nothing else.
func TestKustomizationListsEveryFile(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	require.NoError(t, err)
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(b, &k))
	require.Equal(t, "Kustomization", k.Kind)
	require.Equal(t, "modelmon", k.Namespace)
	m := load(t)
	resources := slices.Clone(k.Resources)
	slices.Sort(resources)
	require.Equal(t, m.files, resources)
	require.Len(t, m.namespaces, 1)
	require.Equal(t, k.Namespace, m.namespaces[0].Name)
}

// containerPort returns a container's port by name.
func containerPort(c corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// The model's pod runs the sidecar in front of the model: the Service sends
// clients to the proxy, the PodMonitor scrapes the metrics port, both
// probes and resources are set, and the sidecar's configuration is valid.
func TestModelDeployment(t *testing.T) {
	m := load(t)
	d := m.deployments[0]
	require.Equal(t, d.Spec.Selector.MatchLabels, pick(d.Spec.Template.Labels, d.Spec.Selector.MatchLabels))
	var sidecar, model *corev1.Container
	for i, c := range d.Spec.Template.Spec.Containers {
		switch c.Name {
		case "modelmon":
			sidecar = &d.Spec.Template.Spec.Containers[i]
		case "model":
			model = &d.Spec.Template.Spec.Containers[i]
		}
	}
	require.NotNil(t, sidecar)
	require.NotNil(t, model)
	upstream := containerPort(*model, "model")
	require.NotNil(t, upstream)
	require.Contains(t, sidecar.Args, "--proxy.upstream=http://127.0.0.1:"+itoa(upstream.ContainerPort))
	proxy, metrics := containerPort(*sidecar, "proxy"), containerPort(*sidecar, "metrics")
	require.NotNil(t, proxy)
	require.NotNil(t, metrics)
	require.Contains(t, sidecar.Args, "--proxy.listen-address=:"+itoa(proxy.ContainerPort))
	require.Contains(t, sidecar.Args, "--web.listen-address=:"+itoa(metrics.ContainerPort))
	require.NotNil(t, sidecar.ReadinessProbe)
	require.Equal(t, "/-/ready", sidecar.ReadinessProbe.HTTPGet.Path)
	require.NotNil(t, sidecar.LivenessProbe)
	require.Equal(t, "/-/healthy", sidecar.LivenessProbe.HTTPGet.Path)
	require.False(t, sidecar.Resources.Requests.Memory().IsZero())
	require.False(t, sidecar.Resources.Limits.Memory().IsZero())

	// The Service points at the sidecar's proxy, never at the model.
	var svc *corev1.Service
	for _, s := range m.services {
		if s.Name == d.Name {
			svc = s
		}
	}
	require.NotNil(t, svc)
	require.Equal(t, svc.Spec.Selector, pick(d.Spec.Template.Labels, svc.Spec.Selector))
	for _, p := range svc.Spec.Ports {
		require.Equal(t, "proxy", p.TargetPort.String())
	}

	// A PodMonitor selects the pod and scrapes the sidecar's metrics port.
	found := false
	for _, pm := range m.podMonitors {
		if pm.Spec.Selector.MatchLabels != nil && equalMaps(pm.Spec.Selector.MatchLabels, pick(d.Spec.Template.Labels, pm.Spec.Selector.MatchLabels)) {
			require.Equal(t, "metrics", *pm.Spec.PodMetricsEndpoints[0].Port)
			found = true
		}
	}
	require.True(t, found, "no PodMonitor selects %s", d.Name)

	// The PodMonitor labels each target with its container's name:
	// ModelmonSidecarDown knows by it a sidecar that never came up.
	rules, err := os.ReadFile("../../rules/sidecar.rules.yml")
	require.NoError(t, err)
	want := `up{container="` + sidecar.Name + `"}`
	require.True(t, strings.Contains(string(rules), want), "ModelmonSidecarDown does not select %s", want)

	// The configuration the sidecar mounts is valid.
	cfg := configMapData(t, m, d.Spec.Template.Spec, sidecar, "/etc/modelmon/modelmon.yml")
	_, err = config.Load(cfg)
	require.NoError(t, err)
}

// alertd is a StatefulSet with its storage on a claimed volume, its
// configuration from a ConfigMap and its secrets from a Secret, files named
// by the configuration's *_file keys.
func TestAlertd(t *testing.T) {
	m := load(t)
	s := m.statefulSets[0]
	require.Len(t, s.Spec.VolumeClaimTemplates, 1)
	c := s.Spec.Template.Spec.Containers[0]
	require.Equal(t, "alertd", c.Name)
	claim := s.Spec.VolumeClaimTemplates[0].Name
	var storage string
	for _, vm := range c.VolumeMounts {
		if vm.Name == claim {
			storage = vm.MountPath
		}
	}
	require.NotEmpty(t, storage, "the claimed volume is not mounted")
	require.Contains(t, c.Args, "--storage.path="+storage)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.NotNil(t, containerPort(c, "http"))

	var svc *corev1.Service
	for _, sv := range m.services {
		if sv.Name == s.Spec.ServiceName {
			svc = sv
		}
	}
	require.NotNil(t, svc, "no Service %s", s.Spec.ServiceName)
	require.Equal(t, "http", svc.Spec.Ports[0].TargetPort.String())

	cfg := configMapData(t, m, s.Spec.Template.Spec, &c, "/etc/alertd/alertd.yml")
	// Every *_file of the configuration is a key of a mounted Secret.
	files := regexp.MustCompile(`(?m)_file:\s*(\S+)`).FindAllStringSubmatch(cfg, -1)
	require.NotEmpty(t, files)
	for _, f := range files {
		require.True(t, secretHas(m, s.Spec.Template.Spec, &c, f[1]), "%s is no key of a Secret mounted in alertd", f[1])
	}
	require.NotContains(t, cfg, "token:", "secrets belong in the Secret")

	// The secrets are read at load: stand files in for the mounted ones.
	secrets := t.TempDir()
	for i, f := range files {
		local := filepath.Join(secrets, fmt.Sprintf("secret-%d", i))
		require.NoError(t, os.WriteFile(local, []byte("x"), 0o600))
		cfg = strings.ReplaceAll(cfg, f[1], local)
	}
	_, err := alertconfig.Load(cfg, t.TempDir())
	require.NoError(t, err)
}

// The PrometheusRule's groups are rules Prometheus loads.
func TestPrometheusRulePromtool(t *testing.T) {
	promtool := prometheustest.Promtool(t)
	m := load(t)
	b, err := yaml.Marshal(map[string]any{"groups": m.prometheusRules[0].Spec.Groups})
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "modelmon.rules.yml")
	require.NoError(t, os.WriteFile(f, b, 0o644))
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")
}

// configMapData returns the file at path of container c, from the
// ConfigMap volume mounted at its directory.
func configMapData(t *testing.T, m manifests, pod corev1.PodSpec, c *corev1.Container, path string) string {
	t.Helper()
	dir, key := filepath.Dir(path), filepath.Base(path)
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for _, cm := range m.configMaps {
				if cm.Name == v.ConfigMap.Name {
					data, ok := cm.Data[key]
					require.True(t, ok, "ConfigMap %s has no %s", cm.Name, key)
					require.Contains(t, c.Args, "--config.file="+path)
					return data
				}
			}
		}
	}
	t.Fatalf("no ConfigMap is mounted at %s", dir)
	return ""
}

// secretHas says whether path is a key of a Secret mounted in c.
func secretHas(m manifests, pod corev1.PodSpec, c *corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != filepath.Dir(path) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			for _, s := range m.secrets {
				if s.Name == v.Secret.SecretName {
					_, inData := s.Data[filepath.Base(path)]
					_, inString := s.StringData[filepath.Base(path)]
					return inData || inString
				}
			}
		}
	}
	return false
}

// pick returns the entries of m whose keys are in keys.
func pick(m, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }
