//go:build !linux

package index

// adviseHuge does nothing where transparent huge pages are not asked for
// (see huge_linux.go).
func adviseHuge([]group) {}
