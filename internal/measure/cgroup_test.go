package measure

import (
	"os"
	"testing"
	"time"
)

// A group accounts the CPU of the process started in it and of that
// process's children after they are gone, and Close empties and removes it.
func TestCPUGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to make a control group")
	}
	g, err := NewCPUGroup("test")
	if err != nil {
		t.Fatal(err)
	}
	before, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	// A child of the started shell spins, ends and is reaped; the shell
	// then waits on a pipe, so it is still in the group when Close runs.
	cmd := g.Command("/bin/sh", "-c", `sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; echo done; read x`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cmd.StdinPipe()
	defer in.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "done\n" {
		t.Fatalf("read %q %v", buf, err)
	}
	used, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if used-before < 50*time.Millisecond {
		t.Errorf("the group used %s for 300,000 shell loop rounds in a gone child", used-before)
	}
	go cmd.Wait()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.dir); !os.IsNotExist(err) {
		t.Errorf("group left behind: %v", err)
	}
}
