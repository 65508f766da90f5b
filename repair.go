package simdr

// Range is a span of bytes in a store file.
type Range struct {
	Off int64 `json:"offset"`
	Len int64 `json:"length"`
}

// RepairReport says what Open with Options.Repair changed in the file.
type RepairReport struct {
	// OldSize and NewSize are the file's size before and after the repair.
	OldSize int64 `json:"old_size"`
	NewSize int64 `json:"new_size"`
	// Kept is the number of intact entries kept, in their order.
	Kept int `json:"kept"`
	// Relinked is the number of entries whose link to the entry before had to
	// be rewritten (a damaged prev field, or entries moved down over a gap).
	Relinked int `json:"relinked"`
	// Dropped lists the byte ranges of the old file that held no intact
	// entry and were left out.
	Dropped []Range `json:"dropped"`
}

// Repaired returns what Open with Options.Repair changed, or nil when the
// file needed no repair (or Repair was not set).
func (s *Store) Repaired() *RepairReport { return s.repaired }
