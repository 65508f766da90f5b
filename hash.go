package simdr

import (
	"encoding/binary"

	"github.com/simdr-go/simdr/internal/format"
)

// NamespaceKey returns the 16-byte key the Rust original builds for key inside
// namespace: the little-endian XXH3-64 of namespace followed by the
// little-endian XXH3-64 of key. Stores that use namespaces interoperate
// through it.
func NamespaceKey(namespace, key []byte) []byte {
	out := make([]byte, 16)
	binary.LittleEndian.PutUint64(out[:8], format.Hash(namespace))
	binary.LittleEndian.PutUint64(out[8:], format.Hash(key))
	return out
}
