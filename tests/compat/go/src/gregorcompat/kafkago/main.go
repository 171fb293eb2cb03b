// Driver for segmentio/kafka-go as Debian packages it (golang-github-segmentio-kafka-go-dev,
// 0.2.1, from 2018) in gregor's client-compatibility suite; contract in tests/compat/README.md.
//
//	kafka-go-driver --bootstrap HOST:PORT
//
// kafka-go 0.2.1 never asks the broker which versions it speaks: every request has one fixed
// version (Produce v2 and Fetch v2 with magic-1 message sets, ListOffsets v1, Metadata v1,
// CreateTopics v0, DeleteTopics v1, FindCoordinator v0, JoinGroup v1, SyncGroup v0,
// Heartbeat v0, LeaveGroup v0, OffsetCommit v2, OffsetFetch v1). Kafka 4.0 removed several of
// those (KIP-896) and gregor follows it, so a call that fails where gregor does not serve the
// client's version is reported as xfail naming both; the driver reads gregor's advertised ranges
// with one raw ApiVersions request only to say so. Where the client cannot do a setup step
// (create a topic, write the records to read), the gregor CLI does it, as the kcat driver does.
//
// Its public API is Conn (CreateTopics, DeleteTopics, ReadPartitions, ReadOffset*), Writer and
// Reader (one partition, or a consumer group); the group requests its Reader sends are not
// exported (no group admin), and it has no zstd codec, no idempotent producer and no other admin
// call. The group flow sees each member's assignment through the Reader's Logger, the only
// place kafka-go 0.2.1 shows it.
package main

import (
	"context"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/gzip"
	"github.com/segmentio/kafka-go/lz4"
	"github.com/segmentio/kafka-go/snappy"

	h "gregorcompat/harness"
)

// version is set at build time (-ldflags -X main.version=...) from the Debian package.
var version = "0.2.1"

var flows = []string{
	"list_topics", "admin_topics",
	"produce_none", "produce_gzip", "produce_snappy", "produce_lz4", "produce_zstd",
	"consume_earliest", "consume_offset", "consume_timestamp",
	"group", "admin_groups", "idempotent", "transactions", "unsupported",
}

var (
	bootstrap string
)

var gaps = &h.Gaps{Client: "kafka-go 0.2.1"}

// gap: see h.Gaps.Gap (kafka-go 0.2.1 sends every request at one fixed version).
func gap(api string, v int16, err error) error { return gaps.Gap(api, v, err) }

func served(api string, v int16) bool { return gaps.Served(api, v) }

func isXFail(err error) bool { return h.IsXFail(err) }

func dial(ctx context.Context, f *h.Flow) (*kafka.Conn, error) {
	c, err := kafka.DialContext(ctx, "tcp", bootstrap)
	if err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = f.Deadline
	}
	c.SetDeadline(dl)
	return c, nil
}

// createTopic creates a topic with the client's CreateTopics (v0); when gregor does not serve
// that version, with the gregor CLI instead (setup; noted). Then waits until its metadata shows
// every partition with a leader.
func createTopic(f *h.Flow, name string, partitions int, configs ...kafka.ConfigEntry) error {
	ctx, cancel := f.Sub(15 * time.Second)
	defer cancel()
	c, err := dial(ctx, f)
	if err != nil {
		return err
	}
	err = c.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: partitions,
		ReplicationFactor: 1, ConfigEntries: configs})
	c.Close()
	if err != nil {
		if g := gap("CreateTopics", 0, err); isXFail(g) {
			if err := cliCreate(name, partitions, configs...); err != nil {
				return err
			}
			f.Note("topics created with the gregor CLI (CreateTopics v0 not served)")
		} else {
			return fmt.Errorf("CreateTopics(%s, %d partitions): %v", name, partitions, err)
		}
	}
	return waitPartitions(f, name, partitions)
}

func cliCreate(name string, partitions int, configs ...kafka.ConfigEntry) error {
	args := []string{"topics", "create", "--bootstrap-server", bootstrap, "--topic", name,
		"--partitions", strconv.Itoa(partitions)}
	for _, c := range configs {
		args = append(args, "--config", c.ConfigName+"="+c.ConfigValue)
	}
	_, err := h.Gregor(15*time.Second, "", args...)
	return err
}

func waitPartitions(f *h.Flow, name string, partitions int) error {
	return f.WaitUntil(10*time.Second, "topic "+name+" in metadata", func() (bool, error) {
		ps, err := topicPartitions(f, name)
		if err != nil {
			return false, err
		}
		if len(ps) != partitions {
			return false, fmt.Errorf("%d partitions", len(ps))
		}
		for i, p := range ps {
			if p.ID != i || p.Leader.Port == 0 || len(p.Replicas) != 1 {
				return false, fmt.Errorf("partition %+v", p)
			}
		}
		return true, nil
	})
}

// topicPartitions reads the named topic's metadata (Metadata v1 for that topic; like Kafka,
// gregor auto-creates a missing topic at that version, so this is only asked of existing ones).
func topicPartitions(f *h.Flow, name string) ([]kafka.Partition, error) {
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	c, err := dial(ctx, f)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	all, err := c.ReadPartitions(name)
	if err != nil {
		return nil, gap("Metadata", 1, err)
	}
	var ps []kafka.Partition
	for _, p := range all {
		if p.Topic == name {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a].ID < ps[b].ID })
	return ps, nil
}

// cliTopics lists the topic names with the gregor CLI (a check kafka-go 0.2.1 cannot make, see
// flowListTopics).
func cliTopics() (map[string]bool, error) {
	out, err := h.Gregor(10*time.Second, "", "topics", "list", "--bootstrap-server", bootstrap)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, l := range strings.Fields(out) {
		names[l] = true
	}
	return names, nil
}

// kafka-go 0.2.1's Conn.ReadPartitions() with no topic is meant to list the whole cluster, but
// it sends Metadata v1 with an empty topic array, which since v1 means "no topics" (null means
// all): Kafka answers no topics, and so should gregor.
func flowListTopics(f *h.Flow) error {
	names := []string{f.Unique("a"), f.Unique("b")}
	f.Stage("create two topics")
	for _, n := range names {
		if err := createTopic(f, n, 1); err != nil {
			return err
		}
	}
	f.Stage("Metadata v1 for all topics (Conn.ReadPartitions with no topic)")
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	c, err := dial(ctx, f)
	if err != nil {
		return err
	}
	defer c.Close()
	all, err := c.ReadPartitions()
	if err != nil {
		return gap("Metadata", 1, err)
	}
	topics := map[string]bool{}
	for _, p := range all {
		topics[p.Topic] = true
	}
	if len(topics) == 0 {
		f.Stage("Metadata v1 for the two topics by name")
		for _, n := range names {
			ps, err := topicPartitions(f, n)
			if err != nil {
				return err
			}
			if len(ps) != 1 {
				return h.Failf("topic %s by name: expected 1 partition, got %d", n, len(ps))
			}
		}
		return h.Skip("kafka-go 0.2.1 cannot list all topics: ReadPartitions() sends Metadata v1 with an empty topic array, which means no topics since v1 (gregor, like Kafka, answered none); Metadata v1 for the two topics by name worked")
	}
	for _, n := range names {
		if !topics[n] {
			return h.Failf("topic %s missing from the %d topics listed", n, len(topics))
		}
	}
	f.Note("%d topics listed", len(topics))
	return nil
}

func flowAdminTopics(f *h.Flow) error {
	name := f.Unique("")
	retention := kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "3600000"}
	f.Stage("CreateTopics v0 with 3 partitions and retention.ms")
	ctx, cancel := f.Sub(15 * time.Second)
	defer cancel()
	c, err := dial(ctx, f)
	if err != nil {
		return err
	}
	defer c.Close()
	var createGap error
	if err := c.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{retention}}); err != nil {
		createGap = gap("CreateTopics", 0, err)
		if !isXFail(createGap) {
			return fmt.Errorf("CreateTopics: %v", err)
		}
		f.Stage("create it with the gregor CLI instead, to check the rest")
		if err := cliCreate(name, 3, retention); err != nil {
			return err
		}
		// The failed CreateTopics closed the connection.
		c.Close()
		if c, err = dial(ctx, f); err != nil {
			return err
		}
		defer c.Close()
	}
	f.Stage("describe: 3 partitions in metadata (v1)")
	if err := waitPartitions(f, name, 3); err != nil {
		return err
	}
	f.Stage("DeleteTopics v1")
	if err := c.DeleteTopics(name); err != nil {
		return gap("DeleteTopics", 1, fmt.Errorf("DeleteTopics: %v", err))
	}
	// kafka-go 0.2.1 cannot see it gone: Metadata v1 for the name would auto-create it again and
	// for no name lists nothing (see flowListTopics).
	f.Stage("see it gone (gregor topics list)")
	if err := f.WaitUntil(10*time.Second, "topic gone", func() (bool, error) {
		names, err := cliTopics()
		return err == nil && !names[name], err
	}); err != nil {
		return err
	}
	const noConfigs = "configs not described: kafka-go 0.2.1 has no DescribeConfigs; gone-check by the gregor CLI (a Metadata v1 for the name would re-create it)"
	if createGap != nil {
		o := createGap.(*h.Outcome)
		return h.XFail("%s; with the topic made by the gregor CLI, Metadata v1 (3 partitions) and DeleteTopics v1 worked; %s", o.Detail, noConfigs)
	}
	f.Note(noConfigs)
	return nil
}

// readPartition reads a partition from offset until it has n records or the limit passes.
// Errors the reader only logs are kept for the failure's detail.
func readPartition(f *h.Flow, topic string, partition int, offset int64, n int, limit time.Duration) ([]kafka.Message, error) {
	errs := h.NewLineCapture(nil)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic,
		Partition: partition, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond,
		ErrorLogger: log.New(errs, "", 0)})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		return nil, err
	}
	if !served("Fetch", 2) && limit > 5*time.Second {
		limit = 5 * time.Second // the reader retries forever; its log has the error by then
	}
	ctx, cancel := f.Sub(limit)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if lines := errs.Lines(); len(lines) > 0 {
				err = fmt.Errorf("%v (reader log: %s)", err, lines[len(lines)-1])
			}
			return out, gap("Fetch", 2, fmt.Errorf("partition %d: read %d of %d records: %v", partition, len(out), n, err))
		}
		out = append(out, m)
	}
	return out, nil
}

func lastOffset(f *h.Flow, topic string, partition int) (int64, error) {
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	c, err := kafka.DialLeader(ctx, "tcp", bootstrap, topic, partition)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(f.Left(10 * time.Second)))
	off, err := c.ReadLastOffset()
	return off, gap("ListOffsets", 1, err)
}

func produceFlow(codec kafka.CompressionCodec) func(*h.Flow) error {
	return func(f *h.Flow) error {
		topic := f.Unique("")
		f.Stage("create topic with 3 partitions")
		if err := createTopic(f, topic, 3); err != nil {
			return err
		}
		f.Stage(fmt.Sprintf("produce %d keyed records (Writer, Hash balancer, Produce v2)", h.NRecords))
		w := kafka.NewWriter(kafka.WriterConfig{Brokers: []string{bootstrap}, Topic: topic,
			Balancer: &kafka.Hash{}, CompressionCodec: codec, BatchSize: 100,
			BatchTimeout: 20 * time.Millisecond, MaxAttempts: 3,
			ErrorLogger: log.New(os.Stderr, "  kafka-go writer: ", 0)})
		defer w.Close()
		msgs := make([]kafka.Message, h.NRecords)
		for i := range msgs {
			k, v := h.Record(i)
			msgs[i] = kafka.Message{Key: []byte(k), Value: []byte(v)}
		}
		ctx, cancel := f.Sub(20 * time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return gap("Produce", 2, fmt.Errorf("WriteMessages: %v", err))
		}
		f.Stage("consume back every partition from the earliest offset")
		var got []h.Consumed
		for p := 0; p < 3; p++ {
			end, err := lastOffset(f, topic, p)
			if err != nil {
				return fmt.Errorf("ListOffsets latest of partition %d: %v", p, err)
			}
			ms, err := readPartition(f, topic, p, kafka.FirstOffset, int(end), 15*time.Second)
			if err != nil {
				return err
			}
			for _, m := range ms {
				got = append(got, h.Consumed{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Value: string(m.Value)})
			}
		}
		if err := h.CheckKeyed(got, h.NRecords); err != nil {
			return err
		}
		f.Note("the default balancer is RoundRobin (ignores keys): used the client's key-hashing kafka.Hash; %s", h.PartitionCounts(got))
		return nil
	}
}

// produceTo writes records to one partition through a leader connection (Produce v2); when
// gregor does not serve that, with the gregor CLI (setup for a consume flow; noted).
func produceTo(f *h.Flow, topic string, partition int, msgs ...kafka.Message) error {
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	c, err := kafka.DialLeader(ctx, "tcp", bootstrap, topic, partition)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(f.Left(10 * time.Second)))
	_, err = c.WriteMessages(msgs...)
	if err == nil {
		return nil
	}
	if !isXFail(gap("Produce", 2, err)) {
		return fmt.Errorf("produce (Conn.WriteMessages): %v", err)
	}
	var lines []string
	for _, m := range msgs {
		lines = append(lines, string(m.Value))
	}
	if _, err := h.Gregor(15*time.Second, strings.Join(lines, "\n")+"\n", "produce",
		"--bootstrap-server", bootstrap, "--topic", topic, "--partition", strconv.Itoa(partition)); err != nil {
		return err
	}
	f.Note("records written with the gregor CLI (Produce v2 not served)")
	return nil
}

func values(prefix string, from, to int) []kafka.Message {
	var ms []kafka.Message
	for i := from; i < to; i++ {
		ms = append(ms, kafka.Message{Value: []byte(fmt.Sprintf("%s-%d", prefix, i))})
	}
	return ms
}

func flowConsumeEarliest(f *h.Flow) error {
	topic := f.Unique("")
	f.Stage("create topic, produce 10 records")
	if err := createTopic(f, topic, 1); err != nil {
		return err
	}
	if err := produceTo(f, topic, 0, values("v", 0, 10)...); err != nil {
		return err
	}
	f.Stage("read partition 0 from the earliest offset (Fetch v2)")
	ms, err := readPartition(f, topic, 0, kafka.FirstOffset, 10, 20*time.Second)
	if err != nil {
		return err
	}
	for i, m := range ms {
		if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("v-%d", i) {
			return h.Failf("record %d: expected offset %d value v-%d, got offset %d value %q", i, i, i, m.Offset, m.Value)
		}
	}
	return nil
}

func flowConsumeOffset(f *h.Flow) error {
	topic := f.Unique("")
	f.Stage("create topic, produce 10 records")
	if err := createTopic(f, topic, 1); err != nil {
		return err
	}
	if err := produceTo(f, topic, 0, values("v", 0, 10)...); err != nil {
		return err
	}
	f.Stage("read from offset 5 (Fetch v2)")
	ms, err := readPartition(f, topic, 0, 5, 5, 20*time.Second)
	if err != nil {
		return err
	}
	if ms[0].Offset != 5 || string(ms[0].Value) != "v-5" {
		return h.Failf("first record: expected offset 5 value v-5, got offset %d value %q", ms[0].Offset, ms[0].Value)
	}
	if last := ms[len(ms)-1]; last.Offset != 9 {
		return h.Failf("last record: expected offset 9, got %d", last.Offset)
	}
	return nil
}

func flowConsumeTimestamp(f *h.Flow) error {
	topic := f.Unique("")
	f.Stage("create topic, produce 5 records, then 5 more")
	if err := createTopic(f, topic, 1); err != nil {
		return err
	}
	// With explicit timestamps when the client can write; otherwise the CLI stamps them when it
	// sends, so the lookup time is taken between the two writes.
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	first, second := values("v", 0, 5), values("v", 5, 10)
	for i := range first {
		first[i].Time = base.Add(time.Duration(i) * time.Millisecond)
		second[i].Time = base.Add(30*time.Minute + time.Duration(i)*time.Millisecond)
	}
	lookup := base.Add(20 * time.Minute)
	if err := produceTo(f, topic, 0, first...); err != nil {
		return err
	}
	if !served("Produce", 2) || strings.Contains(strings.Join(f.NotesSoFar(), ";"), "gregor CLI (Produce") {
		time.Sleep(50 * time.Millisecond)
		lookup = time.Now()
		time.Sleep(50 * time.Millisecond)
	}
	if err := produceTo(f, topic, 0, second...); err != nil {
		return err
	}
	f.Stage("ListOffsets v1 by timestamp (Conn.ReadOffset)")
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	c, err := kafka.DialLeader(ctx, "tcp", bootstrap, topic, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(f.Left(10 * time.Second)))
	off, err := c.ReadOffset(lookup)
	if err != nil {
		return gap("ListOffsets", 1, fmt.Errorf("ReadOffset: %v", err))
	}
	if off != 5 {
		return h.Failf("offset for a timestamp between records 4 and 5: expected 5, got %d", off)
	}
	f.Stage("read from that offset (Fetch v2)")
	got, err := readPartition(f, topic, 0, off, 5, 15*time.Second)
	if isXFail(err) {
		return h.XFail("ListOffsets v1 by timestamp worked (offset 5); reading from it: %s", err.(*h.Outcome).Detail)
	}
	if err != nil {
		return err
	}
	if got[0].Offset != 5 || string(got[0].Value) != "v-5" {
		return h.Failf("first record: expected offset 5 value v-5, got offset %d value %q", got[0].Offset, got[0].Value)
	}
	return nil
}

// member is one consumer-group Reader; its assignment is read from its Logger.
type member struct {
	name string
	r    *kafka.Reader
	logs *h.LineCapture
	errs *h.LineCapture
}

var subscribedRe = regexp.MustCompile(`subscribed to partitions: map\[(.*)\]`)
var pairRe = regexp.MustCompile(`(\d+):(-?\d+)`)

func startMember(name, topic, group string) *member {
	m := &member{name: name, logs: h.NewLineCapture(nil), errs: h.NewLineCapture(nil)}
	m.r = kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, GroupID: group,
		Topic: topic, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second,
		RebalanceTimeout: 10 * time.Second,
		Logger:           log.New(m.logs, "", 0), ErrorLogger: log.New(m.errs, "", 0)})
	return m
}

// subscriptions: the member's assignments in order, each partition -> the offset it starts from
// (the committed one, -2 for none), and how many log lines came before the last one.
func (m *member) subscriptions() (subs []map[int]int64, lastAt int) {
	for i, l := range m.logs.Lines() {
		g := subscribedRe.FindStringSubmatch(l)
		if g == nil {
			continue
		}
		s := map[int]int64{}
		for _, p := range pairRe.FindAllStringSubmatch(g[1], -1) {
			k, _ := strconv.Atoi(p[1])
			v, _ := strconv.ParseInt(p[2], 10, 64)
			s[k] = v
		}
		subs = append(subs, s)
		lastAt = i
	}
	return
}

func (m *member) latest(after int) map[int]int64 {
	subs, at := m.subscriptions()
	if len(subs) == 0 || at < after {
		return nil
	}
	return subs[len(subs)-1]
}

func (m *member) lastError() string {
	if l := m.errs.Lines(); len(l) > 0 {
		return l[len(l)-1]
	}
	return "none"
}

func keys(s map[int]int64) []int {
	var ks []int
	for k := range s {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

func flowGroup(f *h.Flow) error {
	topic, group := f.Unique(""), f.Unique("g")
	f.Stage("create topic with 4 partitions, 5 records in each")
	if err := createTopic(f, topic, 4); err != nil {
		return err
	}
	for p := 0; p < 4; p++ {
		if err := produceTo(f, topic, p, values(fmt.Sprintf("p%d", p), 0, 5)...); err != nil {
			return err
		}
	}
	f.Stage("two members join (JoinGroup v1, SyncGroup v0)")
	a := startMember("A", topic, group)
	b := startMember("B", topic, group)
	aOpen, bOpen := true, true
	defer func() {
		if aOpen {
			a.r.Close()
		}
		if bOpen {
			b.r.Close()
		}
	}()
	var split string
	stableSince := time.Time{}
	err := f.WaitUntil(30*time.Second, "the 4 partitions split between A and B, none twice", func() (bool, error) {
		sa, sb := a.latest(0), b.latest(0)
		ok := len(sa) > 0 && len(sb) > 0 && len(sa)+len(sb) == 4
		for p := range sa {
			if _, twice := sb[p]; twice {
				ok = false
			}
		}
		split = fmt.Sprintf("A %v, B %v", keys(sa), keys(sb))
		if !ok {
			stableSince = time.Time{}
			return false, fmt.Errorf("%s; A's last error: %s; B's: %s", split, a.lastError(), b.lastError())
		}
		// Held for a second: not a passing moment of a rebalance.
		if stableSince.IsZero() {
			stableSince = time.Now()
		}
		return time.Since(stableSince) >= time.Second, nil
	})
	if err != nil {
		return err
	}
	f.Note("split %s", split)
	f.Stage("B closes (its session expires: kafka-go 0.2.1 sends no LeaveGroup); A gets all 4")
	_, before := a.subscriptions()
	b.r.Close()
	bOpen = false
	err = f.WaitUntil(20*time.Second, "A assigned all 4 partitions", func() (bool, error) {
		s := a.latest(before + 1)
		return len(s) == 4, fmt.Errorf("A has %v; A's last error: %s", keys(s), a.lastError())
	})
	if err != nil {
		return err
	}
	f.Stage("A commits offsets 1..4 (OffsetCommit v2)")
	var commits []kafka.Message
	for p := 0; p < 4; p++ {
		// CommitMessages commits the offset after the message's.
		commits = append(commits, kafka.Message{Topic: topic, Partition: p, Offset: int64(p)})
	}
	ctx, cancel := f.Sub(10 * time.Second)
	defer cancel()
	if err := a.r.CommitMessages(ctx, commits...); err != nil {
		return fmt.Errorf("CommitMessages: %v (A's last error: %s)", err, a.lastError())
	}
	f.Stage("A leaves; a new member C starts from the committed offsets (OffsetFetch v1)")
	a.r.Close()
	aOpen = false
	c := startMember("C", topic, group)
	defer c.r.Close()
	var s map[int]int64
	err = f.WaitUntil(20*time.Second, "C assigned all 4 partitions", func() (bool, error) {
		s = c.latest(0)
		return len(s) == 4, fmt.Errorf("C has %v; C's last error: %s", s, c.lastError())
	})
	if err != nil {
		return err
	}
	for p := 0; p < 4; p++ {
		if s[p] != int64(p+1) {
			return h.Failf("committed offsets read back: expected map[0:1 1:2 2:3 3:4], got %v", s)
		}
	}
	f.Note("assignments seen through the Reader's Logger; commits read back by a new member; kafka-go 0.2.1's Reader.Close sends no LeaveGroup, so each departure is seen at the 6 s session timeout")
	return nil
}

func main() {
	d := h.New("segmentio/kafka-go", version, flows, 170*time.Second)
	bootstrap = d.Bootstrap
	log.SetOutput(ioutil.Discard)
	if a, err := h.ProbeAPIVersions(bootstrap); err != nil {
		h.Logf("ApiVersions probe failed (%v): failures are reported as they come", err)
	} else {
		gaps.Advertised = a
	}
	d.Run("list_topics", 30*time.Second, flowListTopics)
	d.Run("admin_topics", 30*time.Second, flowAdminTopics)
	d.Run("produce_none", 45*time.Second, produceFlow(nil))
	d.Run("produce_gzip", 45*time.Second, produceFlow(gzip.NewCompressionCodec()))
	d.Run("produce_snappy", 45*time.Second, produceFlow(snappy.NewCompressionCodec()))
	d.Run("produce_lz4", 45*time.Second, produceFlow(lz4.NewCompressionCodec()))
	d.Emit("produce_zstd", "skip", "no zstd codec in kafka-go 0.2.1 (Debian's package has gzip, snappy, lz4)")
	d.Run("consume_earliest", 30*time.Second, flowConsumeEarliest)
	d.Run("consume_offset", 30*time.Second, flowConsumeOffset)
	d.Run("consume_timestamp", 30*time.Second, flowConsumeTimestamp)
	d.Run("group", 60*time.Second, flowGroup)
	d.Emit("admin_groups", "skip", "kafka-go 0.2.1 has no public group admin API (the ListGroups/DescribeGroups/OffsetFetch requests it has are internal to Reader)")
	d.Emit("idempotent", "skip", "kafka-go 0.2.1 has no idempotent producer")
	d.Emit("transactions", "skip", "kafka-go 0.2.1 has no transactional producer and no read_committed reader (Fetch v2 has no isolation level)")
	d.Emit("unsupported", "skip", "kafka-go 0.2.1 offers no admin call beyond CreateTopics and DeleteTopics (no ACLs, configs, DeleteRecords, transactions)")
	d.Finish()
}
