package harness

import (
	"errors"
	"strings"
)

// APIKeys are the Kafka API keys by name.
var APIKeys = map[string]int16{"Produce": 0, "Fetch": 1, "ListOffsets": 2, "Metadata": 3,
	"OffsetCommit": 8, "OffsetFetch": 9, "FindCoordinator": 10, "JoinGroup": 11, "Heartbeat": 12,
	"LeaveGroup": 13, "SyncGroup": 14, "DescribeGroups": 15, "ListGroups": 16, "ApiVersions": 18,
	"CreateTopics": 19, "DeleteTopics": 20, "DeleteRecords": 21, "InitProducerId": 22,
	"AddPartitionsToTxn": 24, "AddOffsetsToTxn": 25, "EndTxn": 26, "TxnOffsetCommit": 28,
	"DescribeAcls": 29, "CreateAcls": 30, "DeleteAcls": 31, "DescribeConfigs": 32,
	"AlterConfigs": 33, "CreatePartitions": 37, "DeleteGroups": 42}

// Gaps explains failures of a client whose request versions are fixed, against gregor's
// advertised ranges (read once with ProbeAPIVersions; nil when that failed).
type Gaps struct {
	Client     string
	Advertised map[int16]Range
}

// Served: gregor advertises version v of api (true when unknown).
func (g *Gaps) Served(api string, v int16) bool {
	r, known := g.Advertised[APIKeys[api]]
	return !known || (v >= r.Min && v <= r.Max)
}

// Gap turns err from a call of api sent at version v into an xfail when gregor does not serve
// that version: it advertises a range without it (and so closed the connection, as Kafka does),
// or it answered UNSUPPORTED_VERSION. Any other error is returned as it is.
func (g *Gaps) Gap(api string, v int16, err error) error {
	if err == nil {
		return nil
	}
	var o *Outcome
	if errors.As(err, &o) {
		return err
	}
	key, ok := APIKeys[api]
	r, known := g.Advertised[key]
	if ok && known && (v < r.Min || v > r.Max) {
		return XFail("%s sends %s v%d; gregor serves %s v%d-%d (Kafka 4.0 removed the old versions, KIP-896) and closed the connection; client error: %v",
			g.Client, api, v, api, r.Min, r.Max, err)
	}
	if ok && !known && g.Advertised != nil {
		return XFail("%s sends %s v%d; gregor does not serve %s at all and closed the connection; client error: %v", g.Client, api, v, api, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "Unsupported Version") || strings.Contains(msg, "version of API is not supported") {
		return XFail("%s sends %s v%d; gregor answers it UNSUPPORTED_VERSION (advertised v%d-%d; Kafka 4.0 does the same for Produce v0-v2, KIP-896/KAFKA-18659); client error: %v",
			g.Client, api, v, r.Min, r.Max, err)
	}
	return err
}

// IsXFail: err is an xfail outcome.
func IsXFail(err error) bool {
	var o *Outcome
	return errors.As(err, &o) && o.Result == "xfail"
}
