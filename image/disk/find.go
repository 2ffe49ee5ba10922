package disk

import (
	"io"

	"concierge/internal/gpt"
)

// Find reads the primary GPT of the disk image r and returns the byte
// offset and size of the partition named name.
func Find(r io.ReaderAt, name string) (offset, size int64, err error) {
	t, err := gpt.Read(r)
	if err != nil {
		return 0, 0, err
	}
	p, err := t.Find(name)
	if err != nil {
		return 0, 0, err
	}
	return p.Offset(), p.Size(), nil
}
