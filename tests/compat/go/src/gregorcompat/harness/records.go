package harness

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// N_RECORDS keyed records over N_KEYS keys for the produce_<codec> flows.
const (
	NRecords = 1000
	NKeys    = 100
)

// Record i: key "k-<i mod NKeys>", value "<key>:<per-key sequence>:<i>".
func Record(i int) (key, value string) {
	k := i % NKeys
	return fmt.Sprintf("k-%03d", k), fmt.Sprintf("k-%03d:%d:%d", k, i/NKeys, i)
}

// Consumed is one record read back.
type Consumed struct {
	Partition int
	Offset    int64
	Key       string
	Value     string
}

// CheckKeyed checks records read back (in each partition's order): every produced record once,
// per-key order kept, all records of one key in one partition.
func CheckKeyed(got []Consumed, n int) error {
	seen := map[int]int{}
	keyPart := map[string]int{}
	lastSeq := map[string]int{}
	var problems []string
	// Sort by partition then offset: per-partition order is what the broker guarantees.
	sort.SliceStable(got, func(a, b int) bool {
		if got[a].Partition != got[b].Partition {
			return got[a].Partition < got[b].Partition
		}
		return got[a].Offset < got[b].Offset
	})
	for _, c := range got {
		parts := strings.Split(c.Value, ":")
		if len(parts) != 3 || parts[0] != c.Key {
			problems = append(problems, fmt.Sprintf("unexpected record key=%q value=%q at p%d@%d", c.Key, c.Value, c.Partition, c.Offset))
			continue
		}
		seq, _ := strconv.Atoi(parts[1])
		i, _ := strconv.Atoi(parts[2])
		seen[i]++
		if p, ok := keyPart[c.Key]; ok && p != c.Partition {
			problems = append(problems, fmt.Sprintf("key %s in partitions %d and %d", c.Key, p, c.Partition))
		}
		keyPart[c.Key] = c.Partition
		if last, ok := lastSeq[c.Key]; ok && seq <= last {
			problems = append(problems, fmt.Sprintf("key %s: seq %d after %d (p%d@%d)", c.Key, seq, last, c.Partition, c.Offset))
		}
		lastSeq[c.Key] = seq
	}
	var missing, dup int
	for i := 0; i < n; i++ {
		switch seen[i] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("... %d more", len(problems)-5))
		}
		return Failf("expected %d records once each; got %d records, %d missing, %d duplicated; %s",
			n, len(got), missing, dup, strings.Join(problems, "; "))
	}
	return nil
}

// PartitionCounts formats how many records each partition holds.
func PartitionCounts(got []Consumed) string {
	c := map[int]int{}
	for _, r := range got {
		c[r.Partition]++
	}
	var ps []int
	for p := range c {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("p%d:%d", p, c[p]))
	}
	return strings.Join(s, " ")
}
