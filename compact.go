package simdr

// compactPath is where Compact writes the new file before renaming it over the
// store. Only the writer that holds the lock compacts, so a file found there
// when a writer opens is a leftover of an interrupted Compact: it is removed.
func compactPath(path string) string { return path + ".compact" }
