package appliance

import (
	"errors"
	"io"
)

// NBTNames prints the NetBIOS names and WINS table of the server running on
// dataDir.
func NBTNames(dataDir string, w io.Writer) error {
	return errors.New("the NetBIOS name service is not in this build yet")
}
