// Driver for Shopify/sarama as Debian packages it (golang-github-shopify-sarama-dev, 1.22.1) in
// gregor's client-compatibility suite; contract in tests/compat/README.md.
//
//	sarama-driver --bootstrap HOST:PORT
//
// sarama 1.22 picks each request's version from Config.Version, not from ApiVersions; the driver
// sets the newest it knows (2.2.0), as a user would. Even so some calls stay at versions Kafka
// 4.0 removed (KIP-896) and gregor does not serve: ClusterAdmin.DescribeConfig and ListTopics
// send DescribeConfigs v0, and the consumer-group offset manager sends OffsetCommit v1 unless
// Consumer.Offsets.Retention is set (then v2; the driver sets it and says so). A call that fails
// where gregor does not serve the client's version is reported as xfail naming both; the driver
// reads gregor's advertised ranges with one raw ApiVersions request only to say so.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/ioutil"
	"log"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/Shopify/sarama"

	h "gregorcompat/harness"
)

// version is set at build time (-ldflags -X main.version=...) from the Debian package.
var version = "1.22.1"

var flows = []string{
	"list_topics", "admin_topics",
	"produce_none", "produce_gzip", "produce_snappy", "produce_lz4", "produce_zstd",
	"consume_earliest", "consume_offset", "consume_timestamp",
	"group", "admin_groups", "idempotent", "transactions",
}

var (
	bootstrap string
	gaps      = &h.Gaps{Client: "sarama 1.22.1"}
)

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "gregor-compat-sarama"
	c.Version = sarama.V2_2_0_0 // the newest sarama 1.22 knows
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 12 * time.Second
	c.Net.WriteTimeout = 5 * time.Second
	c.Metadata.Retry.Max = 3
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Admin.Timeout = 10 * time.Second
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 3
	c.Producer.Retry.Backoff = 200 * time.Millisecond
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Consumer.MaxWaitTime = 200 * time.Millisecond
	c.Consumer.Return.Errors = true
	// OffsetCommit v2 (v1 when 0, which gregor, like Kafka 4.0, does not serve).
	c.Consumer.Offsets.Retention = 24 * time.Hour
	c.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
	c.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	c.Consumer.Group.Rebalance.Retry.Backoff = 200 * time.Millisecond
	return c
}

func newClient(f *h.Flow, cfg *sarama.Config) (sarama.Client, error) {
	if cfg == nil {
		cfg = config()
	}
	c, err := sarama.NewClient([]string{bootstrap}, cfg)
	if err != nil {
		return nil, err
	}
	f.Defer(func() { c.Close() })
	return c, nil
}

func newAdmin(f *h.Flow) (sarama.ClusterAdmin, error) {
	a, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	if err != nil {
		return nil, err
	}
	f.Defer(func() { a.Close() })
	return a, nil
}

// isTimeout: the client gave up waiting for an answer (a hang, not a refusal).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func createTopic(f *h.Flow, a sarama.ClusterAdmin, name string, partitions int32, configs map[string]*string) error {
	if err := a.CreateTopic(name, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: configs}, false); err != nil {
		return gaps.Gap("CreateTopics", 2, fmt.Errorf("CreateTopic(%s): %v", name, err))
	}
	return f.WaitUntil(10*time.Second, "topic "+name+" in metadata", func() (bool, error) {
		md, err := a.DescribeTopics([]string{name})
		if err != nil {
			return false, err
		}
		if len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != int(partitions) {
			return false, fmt.Errorf("metadata %+v", md)
		}
		for _, p := range md[0].Partitions {
			if p.Leader < 0 || p.Err != sarama.ErrNoError {
				return false, fmt.Errorf("partition %d: leader %d, %v", p.ID, p.Leader, p.Err)
			}
		}
		return true, nil
	})
}

func flowListTopics(f *h.Flow) error {
	a, err := newAdmin(f)
	if err != nil {
		return err
	}
	names := []string{f.Unique("a"), f.Unique("b")}
	f.Stage("create two topics")
	for _, n := range names {
		if err := createTopic(f, a, n, 1, nil); err != nil {
			return err
		}
	}
	f.Stage("Client.Topics (Metadata v5 for all topics)")
	c, err := newClient(f, nil)
	if err != nil {
		return err
	}
	if err := c.RefreshMetadata(); err != nil {
		return err
	}
	topics, err := c.Topics()
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, t := range topics {
		have[t] = true
	}
	for _, n := range names {
		if !have[n] {
			return h.Failf("topic %s missing from the %d topics listed", n, len(topics))
		}
	}
	f.Note("%d topics", len(topics))
	f.Stage("ClusterAdmin.ListTopics (Metadata v0 + DescribeConfigs v0)")
	if _, err := a.ListTopics(); err != nil {
		if g := gaps.Gap("DescribeConfigs", 0, err); h.IsXFail(g) {
			f.Note("ClusterAdmin.ListTopics fails: it sends DescribeConfigs v0, which gregor (like Kafka 4.0) does not serve")
		} else {
			return fmt.Errorf("ClusterAdmin.ListTopics: %v", err)
		}
	}
	return nil
}

func flowAdminTopics(f *h.Flow) error {
	a, err := newAdmin(f)
	if err != nil {
		return err
	}
	name := f.Unique("")
	ret := "3600000"
	f.Stage("CreateTopic v2 with 3 partitions and retention.ms")
	if err := createTopic(f, a, name, 3, map[string]*string{"retention.ms": &ret}); err != nil {
		return err
	}
	f.Stage("DescribeTopics (Metadata v5)")
	md, err := a.DescribeTopics([]string{name})
	if err != nil {
		return err
	}
	if len(md) != 1 || len(md[0].Partitions) != 3 {
		return h.Failf("expected 1 topic with 3 partitions, got %+v", md)
	}
	f.Stage("DescribeConfig (DescribeConfigs v0)")
	var describeGap error
	entries, err := a.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: name})
	if err != nil {
		describeGap = gaps.Gap("DescribeConfigs", 0, err)
		if !h.IsXFail(describeGap) {
			return fmt.Errorf("DescribeConfig: %v", err)
		}
		// sarama's Broker API lets a user send v1 themselves.
		f.Stage("Broker.DescribeConfigs v1 (the admin call sends v0)")
		// (a new client: gregor closed the admin's connection on the v0 request)
		c, err := newClient(f, nil)
		if err != nil {
			return err
		}
		ctl, err := c.Controller()
		if err != nil {
			return err
		}
		resp, err := ctl.DescribeConfigs(&sarama.DescribeConfigsRequest{Version: 1,
			Resources: []*sarama.ConfigResource{{Type: sarama.TopicResource, Name: name}}})
		if err != nil {
			return fmt.Errorf("Broker.DescribeConfigs v1: %v", err)
		}
		if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
			return h.Failf("DescribeConfigs v1: expected one resource without error, got %+v", resp.Resources)
		}
		for _, e := range resp.Resources[0].Configs {
			entries = append(entries, sarama.ConfigEntry{Name: e.Name, Value: e.Value, Default: e.Default})
		}
		if a, err = newAdmin(f); err != nil { // the old one's connection is closed
			return err
		}
	}
	found := ""
	for _, e := range entries {
		if e.Name == "retention.ms" {
			found = e.Value
		}
	}
	if found != ret {
		return h.Failf("retention.ms described as %q, expected %q (%d entries)", found, ret, len(entries))
	}
	f.Stage("CreatePartitions v0 to 4")
	if err := a.CreatePartitions(name, 4, nil, false); err != nil {
		return gaps.Gap("CreatePartitions", 0, fmt.Errorf("CreatePartitions: %v", err))
	}
	if err := f.WaitUntil(10*time.Second, "4 partitions", func() (bool, error) {
		md, err := a.DescribeTopics([]string{name})
		return err == nil && len(md) == 1 && len(md[0].Partitions) == 4, err
	}); err != nil {
		return err
	}
	f.Stage("DeleteTopic v1")
	if err := a.DeleteTopic(name); err != nil {
		return gaps.Gap("DeleteTopics", 1, fmt.Errorf("DeleteTopic: %v", err))
	}
	f.Stage("see it gone")
	c, err := newClient(f, nil)
	if err != nil {
		return err
	}
	if err := f.WaitUntil(10*time.Second, "topic gone", func() (bool, error) {
		if err := c.RefreshMetadata(); err != nil {
			return false, err
		}
		ts, err := c.Topics()
		for _, t := range ts {
			if t == name {
				return false, fmt.Errorf("still listed")
			}
		}
		return err == nil, err
	}); err != nil {
		return err
	}
	if describeGap != nil {
		return h.XFail("ClusterAdmin.DescribeConfig: %s; the rest worked (CreateTopics v2 with retention.ms, Metadata v5, DescribeConfigs v1 through sarama's Broker API showed retention.ms, CreatePartitions v0, DeleteTopics v1)",
			describeGap.(*h.Outcome).Detail)
	}
	return nil
}

// consumeAll reads partitions of topic from the earliest offset up to their high watermarks.
func consumeAll(f *h.Flow, c sarama.Client, topic string, partitions []int32) ([]*sarama.ConsumerMessage, error) {
	cons, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	var out []*sarama.ConsumerMessage
	for _, p := range partitions {
		end, err := c.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, gaps.Gap("ListOffsets", 1, fmt.Errorf("GetOffset(newest) of partition %d: %v", p, err))
		}
		if end == 0 {
			continue
		}
		pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, gaps.Gap("Fetch", 4, fmt.Errorf("ConsumePartition %d: %v", p, err))
		}
		ms, err := readN(f, pc, int(end), 15*time.Second)
		pc.Close()
		out = append(out, ms...)
		if err != nil {
			return out, fmt.Errorf("partition %d: %v", p, err)
		}
	}
	return out, nil
}

func readN(f *h.Flow, pc sarama.PartitionConsumer, n int, limit time.Duration) ([]*sarama.ConsumerMessage, error) {
	var out []*sarama.ConsumerMessage
	timer := time.NewTimer(f.Left(limit))
	defer timer.Stop()
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case e := <-pc.Errors():
			return out, gaps.Gap("Fetch", 4, fmt.Errorf("after %d of %d records: %v", len(out), n, e))
		case <-timer.C:
			return out, fmt.Errorf("read %d of %d records before the deadline", len(out), n)
		}
	}
	return out, nil
}

func produceFlow(codec sarama.CompressionCodec) func(*h.Flow) error {
	return func(f *h.Flow) error {
		a, err := newAdmin(f)
		if err != nil {
			return err
		}
		topic := f.Unique("")
		f.Stage("create topic with 3 partitions")
		if err := createTopic(f, a, topic, 3, nil); err != nil {
			return err
		}
		f.Stage(fmt.Sprintf("produce %d keyed records (SyncProducer, default hash partitioner, Produce v3)", h.NRecords))
		cfg := config()
		cfg.Producer.Compression = codec
		cfg.Producer.Flush.Messages = 100
		c, err := newClient(f, cfg)
		if err != nil {
			return err
		}
		p, err := sarama.NewSyncProducerFromClient(c)
		if err != nil {
			return err
		}
		defer p.Close()
		var msgs []*sarama.ProducerMessage
		for i := 0; i < h.NRecords; i++ {
			k, v := h.Record(i)
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)})
		}
		if err := p.SendMessages(msgs); err != nil {
			var pe sarama.ProducerErrors
			if errors.As(err, &pe) && len(pe) > 0 {
				err = fmt.Errorf("%d of %d records failed, first: %v", len(pe), len(msgs), pe[0].Err)
			}
			return gaps.Gap("Produce", 3, fmt.Errorf("SendMessages: %v", err))
		}
		f.Stage("consume back every partition from the earliest offset (Fetch v4)")
		ms, err := consumeAll(f, c, topic, []int32{0, 1, 2})
		if err != nil {
			return err
		}
		var got []h.Consumed
		for _, m := range ms {
			got = append(got, h.Consumed{Partition: int(m.Partition), Offset: m.Offset, Key: string(m.Key), Value: string(m.Value)})
		}
		if err := h.CheckKeyed(got, h.NRecords); err != nil {
			return err
		}
		f.Note(h.PartitionCounts(got))
		if codec == sarama.CompressionZSTD {
			f.Note("sent as Produce v3 and read as Fetch v4: Kafka answers zstd below Produce v7/Fetch v10 with UNSUPPORTED_COMPRESSION_TYPE, gregor accepts it")
		}
		return nil
	}
}

// produceValues writes "v-<i>" records to partition 0 with the given timestamps (zero: now).
func produceValues(f *h.Flow, c sarama.Client, topic string, from, to int, ts func(i int) time.Time) error {
	cfg := config()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	pc, err := sarama.NewClient([]string{bootstrap}, cfg)
	if err != nil {
		return err
	}
	defer pc.Close()
	p, err := sarama.NewSyncProducerFromClient(pc)
	if err != nil {
		return err
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for i := from; i < to; i++ {
		m := &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(fmt.Sprintf("v-%d", i))}
		if ts != nil {
			m.Timestamp = ts(i)
		}
		msgs = append(msgs, m)
	}
	if err := p.SendMessages(msgs); err != nil {
		return gaps.Gap("Produce", 3, fmt.Errorf("SendMessages: %v", err))
	}
	return nil
}

func consumeFrom(f *h.Flow, c sarama.Client, topic string, offset int64, n int) ([]*sarama.ConsumerMessage, error) {
	cons, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return nil, err
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, 0, offset)
	if err != nil {
		return nil, gaps.Gap("Fetch", 4, fmt.Errorf("ConsumePartition: %v", err))
	}
	defer pc.Close()
	return readN(f, pc, n, 15*time.Second)
}

func consumeSetup(f *h.Flow) (sarama.Client, string, error) {
	a, err := newAdmin(f)
	if err != nil {
		return nil, "", err
	}
	topic := f.Unique("")
	if err := createTopic(f, a, topic, 1, nil); err != nil {
		return nil, "", err
	}
	c, err := newClient(f, nil)
	return c, topic, err
}

func checkRun(ms []*sarama.ConsumerMessage, from int) error {
	for i, m := range ms {
		if m.Offset != int64(from+i) || string(m.Value) != fmt.Sprintf("v-%d", from+i) {
			return h.Failf("record %d: expected offset %d value v-%d, got offset %d value %q", i, from+i, from+i, m.Offset, m.Value)
		}
	}
	return nil
}

func flowConsumeEarliest(f *h.Flow) error {
	f.Stage("create topic, produce 10 records")
	c, topic, err := consumeSetup(f)
	if err != nil {
		return err
	}
	if err := produceValues(f, c, topic, 0, 10, nil); err != nil {
		return err
	}
	f.Stage("consume partition 0 from OffsetOldest (ListOffsets v1, Fetch v4)")
	ms, err := consumeFrom(f, c, topic, sarama.OffsetOldest, 10)
	if err != nil {
		return err
	}
	return checkRun(ms, 0)
}

func flowConsumeOffset(f *h.Flow) error {
	f.Stage("create topic, produce 10 records")
	c, topic, err := consumeSetup(f)
	if err != nil {
		return err
	}
	if err := produceValues(f, c, topic, 0, 10, nil); err != nil {
		return err
	}
	f.Stage("consume from offset 5 (Fetch v4)")
	ms, err := consumeFrom(f, c, topic, 5, 5)
	if err != nil {
		return err
	}
	return checkRun(ms, 5)
}

func flowConsumeTimestamp(f *h.Flow) error {
	f.Stage("create topic, produce 5 old and 5 newer records")
	c, topic, err := consumeSetup(f)
	if err != nil {
		return err
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ts := func(i int) time.Time {
		if i >= 5 {
			return base.Add(30*time.Minute + time.Duration(i)*time.Millisecond)
		}
		return base.Add(time.Duration(i) * time.Millisecond)
	}
	if err := produceValues(f, c, topic, 0, 10, ts); err != nil {
		return err
	}
	f.Stage("GetOffset by timestamp (ListOffsets v1)")
	off, err := c.GetOffset(topic, 0, base.Add(20*time.Minute).UnixNano()/int64(time.Millisecond))
	if err != nil {
		return gaps.Gap("ListOffsets", 1, fmt.Errorf("GetOffset: %v", err))
	}
	if off != 5 {
		why := ""
		if off == -1 {
			why = " (sarama 1.22 writes max_timestamp -1 in each batch header; Kafka recomputes a batch's max timestamp from its records)"
		}
		return h.Failf("offset for a timestamp between records 4 and 5: expected 5, got %d%s", off, why)
	}
	f.Stage("consume from it")
	ms, err := consumeFrom(f, c, topic, off, 5)
	if err != nil {
		return err
	}
	if err := checkRun(ms, 5); err != nil {
		return err
	}
	if !ms[0].Timestamp.Equal(ts(5)) {
		return h.Failf("record 5 timestamp: expected %v, got %v", ts(5), ms[0].Timestamp)
	}
	return nil
}

// member is one sarama ConsumerGroup member running Consume in a loop.
type member struct {
	name   string
	g      sarama.ConsumerGroup
	mu     sync.Mutex
	claims []map[int32]bool // each session's partitions, in order
	got    map[string]int32 // value -> partition
	errs   []string
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	c := map[int32]bool{}
	for _, ps := range s.Claims() {
		for _, p := range ps {
			c[p] = true
		}
	}
	m.mu.Lock()
	m.claims = append(m.claims, c)
	m.mu.Unlock()
	h.Logf("  member %s: generation %d claims %v", m.name, s.GenerationID(), s.Claims())
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		m.mu.Lock()
		m.got[string(msg.Value)] = msg.Partition
		m.mu.Unlock()
		s.MarkMessage(msg, "")
	}
	return nil
}

func (m *member) latest() (map[int32]bool, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.claims) == 0 {
		return nil, 0
	}
	return m.claims[len(m.claims)-1], len(m.claims)
}

func (m *member) lastError() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) == 0 {
		return "none"
	}
	return m.errs[len(m.errs)-1]
}

func startMember(f *h.Flow, name, topic, group string) (*member, error) {
	cfg := config()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(f.Ctx)
	m := &member{name: name, g: g, got: map[string]int32{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		for e := range g.Errors() {
			m.mu.Lock()
			m.errs = append(m.errs, e.Error())
			m.mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil {
				m.mu.Lock()
				m.errs = append(m.errs, err.Error())
				m.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	return m, nil
}

func (m *member) close() {
	m.cancel()
	m.g.Close() // commits marked offsets, LeaveGroup
	<-m.done
}

func keysOf(s map[int32]bool) []int {
	var ks []int
	for k := range s {
		ks = append(ks, int(k))
	}
	sort.Ints(ks)
	return ks
}

func flowGroup(f *h.Flow) error {
	a, err := newAdmin(f)
	if err != nil {
		return err
	}
	topic, group := f.Unique(""), f.Unique("g")
	f.Stage("create topic with 4 partitions, 5 records in each")
	if err := createTopic(f, a, topic, 4, nil); err != nil {
		return err
	}
	c, err := newClient(f, nil)
	if err != nil {
		return err
	}
	pcfg := config()
	pcfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{bootstrap}, pcfg)
	if err != nil {
		return err
	}
	defer p.Close()
	var msgs []*sarama.ProducerMessage
	for part := int32(0); part < 4; part++ {
		for i := 0; i < 5; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: part, Value: sarama.StringEncoder(fmt.Sprintf("p%d-%d", part, i))})
		}
	}
	if err := p.SendMessages(msgs); err != nil {
		return gaps.Gap("Produce", 3, err)
	}
	f.Stage("two members join (JoinGroup v1, SyncGroup v0)")
	ma, err := startMember(f, "A", topic, group)
	if err != nil {
		return err
	}
	mb, err := startMember(f, "B", topic, group)
	if err != nil {
		ma.close()
		return err
	}
	aOpen, bOpen := true, true
	defer func() {
		if aOpen {
			ma.close()
		}
		if bOpen {
			mb.close()
		}
	}()
	var split string
	var stable time.Time
	if err := f.WaitUntil(30*time.Second, "the 4 partitions split between A and B, none twice", func() (bool, error) {
		sa, _ := ma.latest()
		sb, _ := mb.latest()
		ok := len(sa) > 0 && len(sb) > 0 && len(sa)+len(sb) == 4
		for p := range sa {
			if sb[p] {
				ok = false
			}
		}
		split = fmt.Sprintf("A %v, B %v", keysOf(sa), keysOf(sb))
		if !ok {
			stable = time.Time{}
			return false, fmt.Errorf("%s; A's last error: %s; B's: %s", split, ma.lastError(), mb.lastError())
		}
		if stable.IsZero() {
			stable = time.Now()
		}
		return time.Since(stable) >= time.Second, nil
	}); err != nil {
		return err
	}
	f.Note("split %s", split)
	f.Note("Consumer.Offsets.Retention set, so commits are OffsetCommit v2: sarama's default (0) sends v1, which gregor, like Kafka 4.0, does not serve")
	f.Stage("all 20 records consumed once between them")
	if err := f.WaitUntil(15*time.Second, "20 records consumed", func() (bool, error) {
		ma.mu.Lock()
		mb.mu.Lock()
		n := len(ma.got) + len(mb.got)
		mb.mu.Unlock()
		ma.mu.Unlock()
		return n >= 20, fmt.Errorf("%d records", n)
	}); err != nil {
		return err
	}
	f.Stage("B leaves (LeaveGroup v0); A gets all 4")
	_, sessions := ma.latest()
	mb.close()
	bOpen = false
	if err := f.WaitUntil(20*time.Second, "A claims all 4 partitions", func() (bool, error) {
		s, n := ma.latest()
		return n > sessions && len(s) == 4, fmt.Errorf("A has %v; A's last error: %s", keysOf(s), ma.lastError())
	}); err != nil {
		return err
	}
	f.Stage("A leaves; committed offsets read back (ListConsumerGroupOffsets, OffsetFetch v1)")
	ma.close()
	aOpen = false
	var last string
	if err := f.WaitUntil(10*time.Second, "committed offsets 5,5,5,5", func() (bool, error) {
		r, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
		if err != nil {
			return false, gaps.Gap("OffsetFetch", 1, err)
		}
		var offs []int64
		for part := int32(0); part < 4; part++ {
			b := r.GetBlock(topic, part)
			if b == nil {
				return false, fmt.Errorf("no block for partition %d", part)
			}
			offs = append(offs, b.Offset)
		}
		last = fmt.Sprint(offs)
		return last == "[5 5 5 5]", fmt.Errorf("committed %s", last)
	}); err != nil {
		return err
	}
	_ = c
	return nil
}

func flowAdminGroups(f *h.Flow) error {
	a, err := newAdmin(f)
	if err != nil {
		return err
	}
	topic, group := f.Unique(""), f.Unique("g")
	f.Stage("create topic, one member consumes 4 records and commits")
	if err := createTopic(f, a, topic, 1, nil); err != nil {
		return err
	}
	c, err := newClient(f, nil)
	if err != nil {
		return err
	}
	if err := produceValues(f, c, topic, 0, 4, nil); err != nil {
		return err
	}
	m, err := startMember(f, "M", topic, group)
	if err != nil {
		return err
	}
	open := true
	defer func() {
		if open {
			m.close()
		}
	}()
	if err := f.WaitUntil(15*time.Second, "4 records consumed", func() (bool, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.got) == 4, fmt.Errorf("%d records; last error: %s", len(m.got), m.lastErrorLocked())
	}); err != nil {
		return err
	}
	f.Stage("ListConsumerGroups (ListGroups v0)")
	groups, err := a.ListConsumerGroups()
	if err != nil {
		return gaps.Gap("ListGroups", 0, err)
	}
	if groups[group] != "consumer" {
		return h.Failf("group %s not listed as consumer (got %q among %d groups)", group, groups[group], len(groups))
	}
	f.Stage("DescribeConsumerGroups (DescribeGroups v0)")
	ds, err := a.DescribeConsumerGroups([]string{group})
	if err != nil {
		return gaps.Gap("DescribeGroups", 0, err)
	}
	if len(ds) != 1 || ds[0].Err != sarama.ErrNoError || ds[0].State != "Stable" || len(ds[0].Members) != 1 || ds[0].Protocol != "range" {
		return h.Failf("expected the group Stable with 1 member, protocol range; got %+v", ds)
	}
	for _, mem := range ds[0].Members {
		as, err := mem.GetMemberAssignment()
		if err != nil || len(as.Topics[topic]) != 1 {
			return h.Failf("member assignment: expected %s partition 0, got %+v (%v)", topic, as, err)
		}
	}
	f.Stage("ListConsumerGroupOffsets (OffsetFetch v1)")
	if err := f.WaitUntil(10*time.Second, "committed offset 4", func() (bool, error) {
		r, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
		if err != nil {
			return false, err
		}
		b := r.GetBlock(topic, 0)
		return b != nil && b.Offset == 4, fmt.Errorf("block %+v", b)
	}); err != nil {
		return err
	}
	f.Stage("member leaves; reset the offset to 1 (OffsetManager, OffsetCommit v2)")
	m.close()
	open = false
	om, err := sarama.NewOffsetManagerFromClient(group, c)
	if err != nil {
		return err
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		om.Close()
		return err
	}
	pom.ResetOffset(1, "reset")
	pom.Close()
	if err := om.Close(); err != nil {
		return fmt.Errorf("offset manager close (commit): %v", err)
	}
	if err := f.WaitUntil(10*time.Second, "committed offset 1", func() (bool, error) {
		r, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
		if err != nil {
			return false, err
		}
		b := r.GetBlock(topic, 0)
		return b != nil && b.Offset == 1, fmt.Errorf("block %+v", b)
	}); err != nil {
		return err
	}
	f.Stage("delete the group (Broker.DeleteGroups v0; ClusterAdmin 1.22 has no DeleteConsumerGroup)")
	coord, err := c.Coordinator(group)
	if err != nil {
		return err
	}
	resp, err := coord.DeleteGroups(&sarama.DeleteGroupsRequest{Groups: []string{group}})
	if err != nil {
		return gaps.Gap("DeleteGroups", 0, err)
	}
	if e := resp.GroupErrorCodes[group]; e != sarama.ErrNoError {
		return h.Failf("DeleteGroups: expected no error, got %v", e)
	}
	groups, err = a.ListConsumerGroups()
	if err != nil {
		return err
	}
	if _, still := groups[group]; still {
		return h.Failf("group %s still listed after DeleteGroups", group)
	}
	return nil
}

func (m *member) lastErrorLocked() string {
	if len(m.errs) == 0 {
		return "none"
	}
	return m.errs[len(m.errs)-1]
}

func flowIdempotent(f *h.Flow) error {
	a, err := newAdmin(f)
	if err != nil {
		return err
	}
	topic := f.Unique("")
	f.Stage("create topic with 3 partitions")
	if err := createTopic(f, a, topic, 3, nil); err != nil {
		return err
	}
	f.Stage("idempotent producer (InitProducerId v0, Produce v3 with sequences): 300 keyed records")
	cfg := config()
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Flush.Messages = 50
	c, err := newClient(f, cfg)
	if err != nil {
		return err
	}
	p, err := sarama.NewSyncProducerFromClient(c)
	if err != nil {
		return err
	}
	defer p.Close()
	const n = 300
	var msgs []*sarama.ProducerMessage
	for i := 0; i < n; i++ {
		k, v := h.Record(i)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)})
	}
	if err := p.SendMessages(msgs); err != nil {
		var pe sarama.ProducerErrors
		if errors.As(err, &pe) && len(pe) > 0 {
			err = fmt.Errorf("%d of %d records failed, first: %v", len(pe), n, pe[0].Err)
		}
		return gaps.Gap("InitProducerId", 0, fmt.Errorf("SendMessages: %v", err))
	}
	f.Stage("read back")
	ms, err := consumeAll(f, c, topic, []int32{0, 1, 2})
	if err != nil {
		return err
	}
	var got []h.Consumed
	for _, m := range ms {
		got = append(got, h.Consumed{Partition: int(m.Partition), Offset: m.Offset, Key: string(m.Key), Value: string(m.Value)})
	}
	return h.CheckKeyed(got, n)
}

// unsupported runs one admin call gregor does not serve; a client read timeout is a hang.
func unsupported(d *h.Driver, call, api string, fn func(f *h.Flow) error) {
	d.Unsupported(call, api, func(f *h.Flow) error {
		err := fn(f)
		if err != nil && isTimeout(err) {
			return &h.Outcome{Result: "fail", Detail: fmt.Sprintf("%s: no answer (client read timeout after %v): %v", api, config().Net.ReadTimeout, err)}
		}
		return err
	})
}

func unsupportedCalls(d *h.Driver) {
	admin := func(f *h.Flow) (sarama.ClusterAdmin, error) {
		f.Stage("connect")
		return newAdmin(f)
	}
	topicFor := func(f *h.Flow, a sarama.ClusterAdmin) (string, error) {
		f.Stage("create topic")
		t := f.Unique("")
		return t, createTopic(f, a, t, 1, nil)
	}
	unsupported(d, "CreateACL", "CreateAcls v0", func(f *h.Flow) error {
		a, err := admin(f)
		if err != nil {
			return err
		}
		f.Call("CreateACL")
		return a.CreateACL(sarama.Resource{ResourceType: sarama.AclResourceTopic, ResourceName: "t", ResoucePatternType: sarama.AclPatternLiteral},
			sarama.Acl{Principal: "User:alice", Host: "*", Operation: sarama.AclOperationRead, PermissionType: sarama.AclPermissionAllow})
	})
	unsupported(d, "ListAcls", "DescribeAcls v0", func(f *h.Flow) error {
		a, err := admin(f)
		if err != nil {
			return err
		}
		f.Call("ListAcls")
		_, err = a.ListAcls(sarama.AclFilter{ResourceType: sarama.AclResourceAny, ResourcePatternTypeFilter: sarama.AclPatternAny,
			Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny})
		return err
	})
	unsupported(d, "DeleteACL", "DeleteAcls v0", func(f *h.Flow) error {
		a, err := admin(f)
		if err != nil {
			return err
		}
		f.Call("DeleteACL")
		_, err = a.DeleteACL(sarama.AclFilter{ResourceType: sarama.AclResourceAny, ResourcePatternTypeFilter: sarama.AclPatternAny,
			Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}, false)
		return err
	})
	unsupported(d, "AlterConfig", "AlterConfigs v0", func(f *h.Flow) error {
		a, err := admin(f)
		if err != nil {
			return err
		}
		t, err := topicFor(f, a)
		if err != nil {
			return err
		}
		v := "7200000"
		f.Call("AlterConfig")
		return a.AlterConfig(sarama.TopicResource, t, map[string]*string{"retention.ms": &v}, false)
	})
	unsupported(d, "DeleteRecords", "DeleteRecords v0", func(f *h.Flow) error {
		a, err := admin(f)
		if err != nil {
			return err
		}
		t, err := topicFor(f, a)
		if err != nil {
			return err
		}
		f.Call("DeleteRecords")
		return a.DeleteRecords(t, map[int32]int64{0: 0})
	})
}

func main() {
	d := h.New("Shopify/sarama", version, flows, 170*time.Second)
	bootstrap = d.Bootstrap
	if os.Getenv("SARAMA_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "  sarama: ", log.Lmicroseconds)
	} else {
		sarama.Logger = log.New(ioutil.Discard, "", 0)
	}
	if a, err := h.ProbeAPIVersions(bootstrap); err != nil {
		h.Logf("ApiVersions probe failed (%v): failures are reported as they come", err)
	} else {
		gaps.Advertised = a
	}
	d.Run("list_topics", 30*time.Second, flowListTopics)
	d.Run("admin_topics", 30*time.Second, flowAdminTopics)
	d.Run("produce_none", 45*time.Second, produceFlow(sarama.CompressionNone))
	d.Run("produce_gzip", 45*time.Second, produceFlow(sarama.CompressionGZIP))
	d.Run("produce_snappy", 45*time.Second, produceFlow(sarama.CompressionSnappy))
	d.Run("produce_lz4", 45*time.Second, produceFlow(sarama.CompressionLZ4))
	d.Run("produce_zstd", 45*time.Second, produceFlow(sarama.CompressionZSTD))
	d.Run("consume_earliest", 30*time.Second, flowConsumeEarliest)
	d.Run("consume_offset", 30*time.Second, flowConsumeOffset)
	d.Run("consume_timestamp", 30*time.Second, flowConsumeTimestamp)
	d.Run("group", 60*time.Second, flowGroup)
	d.Run("admin_groups", 45*time.Second, flowAdminGroups)
	d.Run("idempotent", 30*time.Second, flowIdempotent)
	d.Emit("transactions", "skip", "sarama 1.22.1 has no transactional producer (transactions came in sarama 1.37); "+
		"its Broker type only sends the single requests (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit)")
	unsupportedCalls(d)
	d.Finish()
}
