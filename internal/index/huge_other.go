//go:build !linux

package index

// hugePages: see huge_linux.go (nothing to turn on here).
var hugePages = false

// adviseHuge does nothing where transparent huge pages are not asked for
// (see huge_linux.go).
func adviseHuge([]group) {}
