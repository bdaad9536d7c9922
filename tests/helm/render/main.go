// helm-render: renders a Helm 3 chart the way `helm template` does, for CI
// machines without Helm (it is not packaged in Debian). It implements the
// part of Helm's engine the portcullis chart uses, with Helm's own
// semantics:
//
//   - values: the chart's values.yaml, then each -f file merged over it in
//     order (maps merge key by key, anything else is replaced, a null deletes
//     the key), as Helm's CoalesceValues does;
//   - values.schema.json validated against the merged values with
//     xeipuuv/gojsonschema, the library Helm 3 uses, before rendering;
//   - the template context: .Values, .Release (Name, Namespace, Service,
//     IsInstall, IsUpgrade, Revision), .Chart (Chart.yaml's fields by their
//     Go names: Name, Version, AppVersion, ...), .Files (Get, GetBytes) and
//     .Template (Name, BasePath);
//   - functions: Sprig's text functions without env/expandenv, plus toYaml,
//     fromYaml, toJson, fromJson, include, required (Helm's definitions); tpl,
//     lookup and .Capabilities are deliberately missing, so a chart that
//     starts using them fails here instead of rendering differently;
//   - missingkey=zero and the "<no value>" scrub; files whose name starts
//     with "_" are partials; NOTES.txt is rendered separately (--notes);
//     each output file is split on "---" lines and empty documents dropped.
//
// Usage: helm-render --chart DIR [-f values.yaml ...] [--name R] [--namespace N]
//
//	[--notes FILE] [--dump-values FILE]
//
// Manifests go to stdout as a YAML stream with "# Source:" comments; errors go
// to stderr with exit status 1 (schema errors list every failing field).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

// Metadata mirrors the fields of Helm's chart.Metadata the templates may read.
type Metadata struct {
	Name         string            `json:"name"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Type         string            `json:"type,omitempty"`
	Maintainers  []interface{}     `json:"maintainers,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

// Release mirrors Helm's chartutil.ReleaseOptions as templates see it.
type Release struct {
	Name      string
	Namespace string
	Revision  int
	IsUpgrade bool
	IsInstall bool
	Service   string
}

// Files is .Files: the chart's non-template files, by path relative to the chart.
type Files map[string][]byte

// Get returns a file's content, or "" when it does not exist (as Helm does).
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a file's content as bytes.
func (f Files) GetBytes(name string) []byte { return f[name] }

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles multiFlag
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "portcullis", "release name")
	namespace := flag.String("namespace", "egress", "release namespace")
	notes := flag.String("notes", "", "write the rendered NOTES.txt here")
	dump := flag.String("dump-values", "", "write the merged values here as JSON (before schema validation)")
	flag.Var(&valueFiles, "f", "values file (repeatable, later files win)")
	flag.Parse()
	if *chartDir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: helm-render --chart DIR [-f values.yaml ...] [--name R] [--namespace N] [--notes FILE] [--dump-values FILE]")
		os.Exit(2)
	}
	if err := run(*chartDir, valueFiles, *name, *namespace, *notes, *dump); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := ioutil.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if out == nil {
		out = map[string]interface{}{}
	}
	return out, nil
}

// mergeMaps merges b over a, as Helm merges several -f files.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]interface{}); ok {
			if av, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce fills dst (the user's values) from src (the chart's defaults): keys
// missing in dst are copied, maps are coalesced recursively, and a key the user
// set to null is deleted — Helm's coalesceTablesFullKey.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		dv, present := dst[k]
		if !present {
			dst[k] = sv
			continue
		}
		if dv == nil {
			delete(dst, k)
			continue
		}
		dm, dok := dv.(map[string]interface{})
		sm, sok := sv.(map[string]interface{})
		if dok && sok {
			dst[k] = coalesce(dm, sm)
		}
	}
	for k, v := range dst {
		if v == nil {
			delete(dst, k)
		}
	}
	return dst
}

func validateSchema(schema []byte, values map[string]interface{}) error {
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var b strings.Builder
	b.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
	for _, e := range res.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(b.String(), "\n"))
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

var sepRE = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

func run(chartDir string, valueFiles []string, relName, relNS, notesOut, dumpOut string) error {
	var meta Metadata
	raw, err := ioutil.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(raw, &meta); err != nil {
		return fmt.Errorf("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}

	defaults, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range valueFiles {
		m, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		user = mergeMaps(user, m)
	}
	values := coalesce(user, defaults)
	if dumpOut != "" {
		doc, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		if err := ioutil.WriteFile(dumpOut, append(doc, '\n'), 0o644); err != nil {
			return err
		}
	}
	if schema, err := ioutil.ReadFile(filepath.Join(chartDir, "values.schema.json")); err == nil {
		if err := validateSchema(schema, values); err != nil {
			return err
		}
	} else if !os.IsNotExist(err) {
		return err
	}

	// Templates and files, named as Helm names them.
	templates := map[string]string{}
	files := Files{}
	err = filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "charts" {
				return errors.New("subcharts are not supported by this renderer")
			}
			return nil
		}
		data, err := ioutil.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			templates[path.Join(meta.Name, rel)] = string(data)
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == ".helmignore":
		default:
			files[rel] = data
		}
		return nil
	})
	if err != nil {
		return err
	}

	t := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includedNames := map[string]int{}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	t.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(templates[n]); err != nil {
			return err
		}
	}

	top := map[string]interface{}{
		"Values": values,
		"Release": Release{Name: relName, Namespace: relNS, Revision: 1, IsInstall: true,
			Service: "Helm"},
		"Chart": meta,
		"Files": files,
	}
	render := func(n string) (string, error) {
		ctx := map[string]interface{}{}
		for k, v := range top {
			ctx[k] = v
		}
		ctx["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(meta.Name, "templates")}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, n, ctx); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}

	var out strings.Builder
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		s, err := render(n)
		if err != nil {
			return err
		}
		for _, doc := range sepRE.Split(s, -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.Trim(doc, "\n"))
		}
	}
	if notesOut != "" {
		n := path.Join(meta.Name, "templates", "NOTES.txt")
		s := ""
		if _, ok := templates[n]; ok {
			if s, err = render(n); err != nil {
				return err
			}
		}
		if err := ioutil.WriteFile(notesOut, []byte(s), 0o644); err != nil {
			return err
		}
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}
