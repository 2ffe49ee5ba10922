package disk

import (
	"encoding/binary"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode/utf16"
)

// FAT16 layout constants of the system partition (fatgen103 section 3).
const (
	fatReserved      = 1
	fatCount         = 2
	fatRootEntries   = 512
	fatSecPerCluster = 8 // 4 KiB clusters
	fatMedia         = 0xF8
	// fatDate is 2020-01-01, the fixed date of every entry (reproducible).
	fatDate = (2020-1980)<<9 | 1<<5 | 1
)

type fatNode struct {
	name     string
	data     []byte
	children map[string]*fatNode // nil for files
	cluster  int
	clusters int
	entries  int // directory entries this node takes in its parent
}

// FAT16 returns a FAT16 file system of the given number of sectors
// holding files (paths with "/", directories implied). hidden is the LBA
// where the partition starts. Every name gets a long (VFAT) name, so case
// is kept; every entry has the same fixed date.
func FAT16(sectors, hidden int64, label string, files map[string][]byte) ([]byte, error) {
	root := &fatNode{children: map[string]*fatNode{}}
	for p, data := range files {
		parts := strings.Split(path.Clean(p), "/")
		dir := root
		for _, d := range parts[:len(parts)-1] {
			next := dir.children[d]
			if next == nil {
				next = &fatNode{name: d, children: map[string]*fatNode{}}
				dir.children[d] = next
			}
			dir = next
		}
		dir.children[parts[len(parts)-1]] = &fatNode{name: parts[len(parts)-1], data: data}
	}
	rootSectors := int64(fatRootEntries * 32 / SectorSize)
	tmp1 := sectors - (fatReserved + rootSectors)
	tmp2 := int64(256*fatSecPerCluster + fatCount)
	fatSectors := (tmp1 + tmp2 - 1) / tmp2
	dataStart := fatReserved + fatCount*fatSectors + rootSectors
	clusterCount := (sectors - dataStart) / fatSecPerCluster
	if clusterCount < 4085 || clusterCount >= 65525 {
		return nil, fmt.Errorf("disk: %d sectors make %d clusters, not a FAT16 size", sectors, clusterCount)
	}
	clusterBytes := fatSecPerCluster * SectorSize
	next := 2
	var alloc func(n *fatNode)
	alloc = func(n *fatNode) {
		size := len(n.data)
		if n.children != nil {
			size = 2 * 32 // "." and ".."
			for _, c := range n.children {
				c.entries = 1 + (len(utf16.Encode([]rune(c.name)))+12)/13
				size += 32 * c.entries
			}
		}
		n.clusters = (size + clusterBytes - 1) / clusterBytes
		if n != root && n.clusters > 0 {
			n.cluster = next
			next += n.clusters
		}
		for _, c := range sortedChildren(n) {
			alloc(c)
		}
	}
	alloc(root)
	if next-2 > int(clusterCount) {
		return nil, fmt.Errorf("disk: files need %d clusters, the partition has %d", next-2, clusterCount)
	}
	img := make([]byte, sectors*SectorSize)
	bs := img[:SectorSize]
	copy(bs[0:], []byte{0xEB, 0x3C, 0x90})
	copy(bs[3:], "CONCIERG")
	binary.LittleEndian.PutUint16(bs[11:], SectorSize)
	bs[13] = fatSecPerCluster
	binary.LittleEndian.PutUint16(bs[14:], fatReserved)
	bs[16] = fatCount
	binary.LittleEndian.PutUint16(bs[17:], fatRootEntries)
	if sectors < 0x10000 {
		binary.LittleEndian.PutUint16(bs[19:], uint16(sectors))
	} else {
		binary.LittleEndian.PutUint32(bs[32:], uint32(sectors))
	}
	bs[21] = fatMedia
	binary.LittleEndian.PutUint16(bs[22:], uint16(fatSectors))
	binary.LittleEndian.PutUint16(bs[24:], 32)
	binary.LittleEndian.PutUint16(bs[26:], 64)
	binary.LittleEndian.PutUint32(bs[28:], uint32(hidden))
	bs[36] = 0x80
	bs[38] = 0x29
	copy(bs[39:], guidFor("fat serial")[:4])
	copy(bs[43:], fmt.Sprintf("%-11.11s", strings.ToUpper(label)))
	copy(bs[54:], "FAT16   ")
	bs[510], bs[511] = 0x55, 0xAA

	fat := make([]byte, fatSectors*SectorSize)
	binary.LittleEndian.PutUint16(fat[0:], 0xFF00|fatMedia)
	binary.LittleEndian.PutUint16(fat[2:], 0xFFFF)
	clusterAt := func(c int) []byte {
		off := (dataStart*SectorSize + int64(c-2)*int64(clusterBytes))
		return img[off : off+int64(clusterBytes)]
	}
	var write func(n *fatNode, parent int) error
	write = func(n *fatNode, parent int) error {
		for i := 0; i < n.clusters && n != root; i++ {
			c := n.cluster + i
			v := uint16(c + 1)
			if i == n.clusters-1 {
				v = 0xFFFF
			}
			binary.LittleEndian.PutUint16(fat[2*c:], v)
		}
		if n.children == nil {
			for i := 0; i < n.clusters; i++ {
				end := min((i+1)*clusterBytes, len(n.data))
				copy(clusterAt(n.cluster+i), n.data[i*clusterBytes:end])
			}
			return nil
		}
		var dir []byte
		if n != root {
			dir = append(dir, shortEntry(".          ", 0x10, n.cluster, 0)...)
			dir = append(dir, shortEntry("..         ", 0x10, parent, 0)...)
		}
		for i, c := range sortedChildren(n) {
			short := fmt.Sprintf("LFN%05d   ", i)
			attr, size := byte(0x20), len(c.data)
			if c.children != nil {
				attr, size = 0x10, 0
			}
			dir = append(dir, longEntries(c.name, short)...)
			dir = append(dir, shortEntry(short, attr, c.cluster, size)...)
		}
		if n == root {
			if len(dir) > fatRootEntries*32 {
				return fmt.Errorf("disk: too many entries in the root directory")
			}
			copy(img[(fatReserved+fatCount*fatSectors)*SectorSize:], dir)
		} else {
			for i := 0; i < n.clusters; i++ {
				end := min((i+1)*clusterBytes, len(dir))
				copy(clusterAt(n.cluster+i), dir[i*clusterBytes:end])
			}
		}
		self := n.cluster
		for _, c := range sortedChildren(n) {
			if err := write(c, self); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(root, 0); err != nil {
		return nil, err
	}
	for i := 0; i < fatCount; i++ {
		copy(img[(fatReserved+int64(i)*fatSectors)*SectorSize:], fat)
	}
	return img, nil
}

func sortedChildren(n *fatNode) []*fatNode {
	var cs []*fatNode
	for _, c := range n.children {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	return cs
}

func shortEntry(name string, attr byte, cluster, size int) []byte {
	e := make([]byte, 32)
	copy(e, name)
	e[11] = attr
	binary.LittleEndian.PutUint16(e[16:], fatDate)
	binary.LittleEndian.PutUint16(e[18:], fatDate)
	binary.LittleEndian.PutUint16(e[24:], fatDate)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], uint32(size))
	return e
}

// longEntries are the VFAT long-name entries for name, last part first.
func longEntries(name, short string) []byte {
	var sum byte
	for i := 0; i < 11; i++ {
		sum = (sum&1)<<7 + sum>>1 + short[i]
	}
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	padded := make([]uint16, n*13)
	for i := range padded {
		switch {
		case i < len(u):
			padded[i] = u[i]
		case i == len(u):
			padded[i] = 0
		default:
			padded[i] = 0xFFFF
		}
	}
	var out []byte
	for seq := n; seq >= 1; seq-- {
		e := make([]byte, 32)
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11] = 0x0F
		e[13] = sum
		chunk := padded[(seq-1)*13 : seq*13]
		offs := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, o := range offs {
			binary.LittleEndian.PutUint16(e[o:], chunk[i])
		}
		out = append(out, e...)
	}
	return out
}
