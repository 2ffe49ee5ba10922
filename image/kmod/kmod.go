// Package kmod resolves the kernel modules the box needs from an unpacked
// Debian kernel package: each module's dependencies are read from the
// "depends=" field of its .modinfo section, and the result is ordered so
// that every module comes after the ones it depends on (the order
// finit_module needs at boot).
package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Module is one kernel module file.
type Module struct {
	Name    string // "virtio_net"
	Path    string // relative to the modules directory, "kernel/drivers/net/virtio_net.ko"
	Depends []string
}

// Index finds every .ko under dir (lib/modules/VERSION) by module name.
func Index(dir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		idx[normalize(strings.TrimSuffix(d.Name(), ".ko"))] = filepath.ToSlash(rel)
		return nil
	})
	return idx, err
}

// normalize makes module names comparable: the kernel treats - and _ alike.
func normalize(n string) string { return strings.ReplaceAll(n, "-", "_") }

// Depends reads the depends= field of a module's .modinfo section.
func Depends(file string) ([]string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kmod: %s has no .modinfo", file)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", file, err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		for _, d := range strings.Split(string(v), ",") {
			if d != "" {
				deps = append(deps, normalize(d))
			}
		}
	}
	return deps, nil
}

// Resolve returns the wanted modules and everything they depend on, each
// after its dependencies; ties are broken by name, so the order is stable.
// Wanted names missing from the kernel are reported as an error unless
// listed in optional.
func Resolve(dir string, wanted []string, optional map[string]bool) ([]Module, error) {
	idx, err := Index(dir)
	if err != nil {
		return nil, err
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("kmod: dependency cycle %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		rel, ok := idx[name]
		if !ok {
			return fmt.Errorf("kmod: module %s (needed by %s) is not in %s", name, strings.Join(chain, " -> "), dir)
		}
		state[name] = 1
		deps, err := Depends(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: rel, Depends: deps})
		return nil
	}
	names := append([]string(nil), wanted...)
	sort.Strings(names)
	for _, w := range names {
		w = normalize(w)
		if _, ok := idx[w]; !ok && optional[w] {
			continue
		}
		if err := visit(w, []string{"(wanted)"}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Builtin reports whether the kernel has a module built in, from
// modules.builtin in dir.
func Builtin(dir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	b := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if l == "" {
			continue
		}
		b[normalize(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
	}
	return b, nil
}
