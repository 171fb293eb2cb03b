#!/usr/bin/env node
'use strict';
// @confluentinc/kafka-javascript (librdkafka) driver for gregor's client-compatibility suite
// (see ../README.md). It uses the client's KafkaJS-style promise API.
//   node confluent_driver.js --bootstrap 127.0.0.1:9092

const {
  Driver,
  TXN_GROUP_OFFSET,
  checkRecords,
  checkTxnRead,
  errText,
  makeRecords,
  offsetRuns,
  parseArgs,
  sleep,
  txnBatches,
  txnExpected,
  waitFor,
  withTimeout,
} = require('./common');
const ckjs = require('@confluentinc/kafka-javascript');

const { Kafka, CompressionTypes, logLevel } = ckjs.KafkaJS;

const CLIENT = 'confluent-kafka-javascript';
const VERSION = `${require('@confluentinc/kafka-javascript/package.json').version} (librdkafka ${ckjs.librdkafkaVersion})`;

// Client and librdkafka logs go to stderr; set CONFLUENT_DEBUG=1 for debug lines too.
const logger = {
  setLogLevel() {},
  namespace() {
    return this;
  },
  write(label, message, extra) {
    const where = extra && extra.name ? ` [${extra.name}${extra.fac ? ` ${extra.fac}` : ''}]` : '';
    process.stderr.write(`confluent ${label}${where} ${message}\n`);
  },
  error(m, e) {
    this.write('ERROR', m, e);
  },
  warn(m, e) {
    this.write('WARN', m, e);
  },
  info(m, e) {
    this.write('INFO', m, e);
  },
  debug(m, e) {
    if (process.env.CONFLUENT_DEBUG) this.write('DEBUG', m, e);
  },
};

// Requests time out after 10 s and retries stay short, so a refused call fails well before
// its flow's deadline.
const COMMON = {
  clientId: 'gregor-compat-confluent',
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
  logger,
};

function makeKafka(bootstrap) {
  return new Kafka({ kafkaJS: { brokers: [bootstrap], ...COMMON } });
}

async function connectedAdmin(t, kafka) {
  const admin = kafka.admin();
  t.defer(() => admin.disconnect());
  t.stage = 'admin connect';
  await admin.connect();
  return admin;
}

async function createTopic(t, admin, topic, numPartitions, configEntries) {
  t.stage = `createTopics ${topic}`;
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    timeout: 10000,
  });
  if (!created) throw new Error(`createTopics returned false for ${topic} (already exists?)`);
}

async function connectedProducer(t, kafka, kafkaJS = {}, extra = {}) {
  const producer = kafka.producer({
    kafkaJS: { acks: -1, allowAutoTopicCreation: false, ...kafkaJS },
    'linger.ms': 5,
    ...extra,
  });
  t.defer(() => producer.disconnect());
  t.stage = 'producer connect';
  await producer.connect();
  return producer;
}

function consumerConfig(groupId, extra = {}) {
  return {
    kafkaJS: {
      groupId,
      fromBeginning: true,
      autoCommit: true,
      autoCommitInterval: 500,
      sessionTimeout: 10000,
      heartbeatInterval: 500,
      rebalanceTimeout: 10000,
      maxWaitTimeInMs: 200,
      ...extra,
    },
  };
}

function toPlain(partition, message) {
  return {
    key: message.key === null || message.key === undefined ? null : message.key.toString(),
    value: message.value === null || message.value === undefined ? null : message.value.toString(),
    partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
  };
}

/**
 * Consumes `topic` in a fresh group (or `groupId`) until `expect` records arrived, then waits
 * `graceMs` for extras (duplicates) and disconnects. `seek` is queued right after run().
 */
async function consume(t, kafka, topic, { expect, groupId, seek, graceMs = 300, readUncommitted = false }) {
  const consumer = kafka.consumer(consumerConfig(groupId || t.name('g'), { readUncommitted }));
  t.defer(() => consumer.disconnect());
  const got = [];
  let done;
  const finished = new Promise((resolve) => {
    done = resolve;
  });
  t.stage = 'consumer connect';
  await consumer.connect();
  await consumer.subscribe({ topics: [topic] });
  t.stage = `consume ${expect} records from ${topic}`;
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      got.push(toPlain(partition, message));
      if (got.length >= expect) done();
    },
  });
  if (seek) consumer.seek({ topic, ...seek });
  await finished;
  await sleep(graceMs);
  t.stage = 'consumer disconnect';
  await consumer.disconnect();
  return got;
}

// ---------------------------------------------------------------------------------------------
// Flows

async function listTopics(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 1);
  t.stage = 'listTopics (Metadata for all topics)';
  const topics = await admin.listTopics({ timeout: 10000 });
  if (!topics.includes(topic)) {
    return { result: 'fail', detail: `listTopics (${topics.length} topics) lacks the topic just created (${topic})` };
  }
}

async function adminTopics(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 3, [{ name: 'retention.ms', value: '3600000' }]);

  t.stage = 'fetchTopicMetadata';
  const md = await admin.fetchTopicMetadata({ topics: [topic], timeout: 10000 });
  const tm = md.find((x) => x.name === topic);
  if (!tm) return { result: 'fail', detail: `fetchTopicMetadata has no ${topic}` };
  const ids = tm.partitions.map((p) => p.partitionId).sort();
  if (ids.join(',') !== '0,1,2') return { result: 'fail', detail: `expected partitions 0,1,2, got ${ids.join(',')}` };
  const bad = tm.partitions.filter((p) => p.leader < 0);
  if (bad.length) return { result: 'fail', detail: `partitions without leader: ${JSON.stringify(bad)}` };

  t.stage = 'deleteTopics';
  await admin.deleteTopics({ topics: [topic], timeout: 10000 });
  t.stage = 'fetchTopicMetadata after delete';
  // listTopics would ask for every topic (see list_topics); ask for this one instead.
  await waitFor(
    async () => {
      try {
        const after = await admin.fetchTopicMetadata({ topics: [topic], timeout: 5000 });
        return !after.some((x) => x.name === topic && x.partitions.length);
      } catch (e) {
        return /UNKNOWN_TOPIC|Unknown topic/i.test(`${e.type} ${e.message}`) ? true : Promise.reject(e);
      }
    },
    { timeoutMs: 10000, intervalMs: 200, what: `${topic} to be gone` },
  );
  return { result: 'pass', detail: 'created with retention.ms, 3 partitions described, deleted; configs not described: the client offers no DescribeConfigs call' };
}

function produceFlow(codecName, type) {
  return async (t, kafka) => {
    const admin = await connectedAdmin(t, kafka);
    const topic = t.name('t');
    await createTopic(t, admin, topic, 3);
    const producer = await connectedProducer(t, kafka, { compression: type });
    const records = makeRecords(1000, 100);
    t.stage = `send 1000 records (${codecName})`;
    for (let i = 0; i < records.length; i += 100) {
      await producer.send({ topic, messages: records.slice(i, i + 100) });
    }
    const got = await consume(t, kafka, topic, { expect: 1000 });
    const problem = checkRecords(1000, 100, 3, got);
    if (problem) return { result: 'fail', detail: problem };
  };
}

async function produceNumbered(t, kafka, topic, n, { timestamps } = {}) {
  const producer = await connectedProducer(t, kafka);
  t.stage = `send ${n} records`;
  const messages = [];
  for (let i = 0; i < n; i++) {
    const m = { key: `k${i}`, value: `v${i}`, partition: 0 };
    if (timestamps) m.timestamp = String(timestamps[i]);
    messages.push(m);
  }
  await producer.send({ topic, messages });
}

async function consumeEarliest(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 1);
  await produceNumbered(t, kafka, topic, 10);
  const got = await consume(t, kafka, topic, { expect: 10 });
  const offsets = got.map((m) => m.offset).join(',');
  const values = got.map((m) => m.value).join(',');
  if (offsets !== '0,1,2,3,4,5,6,7,8,9') return { result: 'fail', detail: `offsets read: ${offsets}` };
  if (values !== [...Array(10).keys()].map((i) => `v${i}`).join(',')) return { result: 'fail', detail: `values read: ${values}` };
}

async function consumeOffset(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 1);
  await produceNumbered(t, kafka, topic, 20);
  const got = await consume(t, kafka, topic, { expect: 10, seek: { partition: 0, offset: '10' } });
  if (got[0].offset !== 10 || got[0].value !== 'v10') {
    return { result: 'fail', detail: `seek to 10: first record seen is offset ${got[0].offset} (${got[0].value})` };
  }
  const offsets = got.map((m) => m.offset).join(',');
  if (offsets !== '10,11,12,13,14,15,16,17,18,19') return { result: 'fail', detail: `offsets read: ${offsets}` };
}

async function consumeTimestamp(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 1);
  const base = Date.now() - 600000;
  const timestamps = [...Array(10).keys()].map((i) => base + i * 1000);
  await produceNumbered(t, kafka, topic, 10, { timestamps });
  t.stage = 'fetchTopicOffsetsByTimestamp';
  const target = base + 4500; // between records 4 and 5: the first at or after it is offset 5
  const found = await admin.fetchTopicOffsetsByTimestamp(topic, target, { timeout: 10000 });
  const p0 = found.find((p) => p.partition === 0);
  if (!p0 || String(p0.offset) !== '5') return { result: 'fail', detail: `ListOffsets for timestamp: expected offset 5, got ${JSON.stringify(found)}` };
  const got = await consume(t, kafka, topic, { expect: 5, seek: { partition: 0, offset: String(p0.offset) } });
  if (got[0].offset !== 5 || got[0].timestamp !== timestamps[5]) {
    return { result: 'fail', detail: `first record after seek: offset ${got[0].offset} timestamp ${got[0].timestamp}, expected 5 / ${timestamps[5]}` };
  }
}

function assignmentOf(consumer, topic) {
  try {
    // A flat list of {topic, partition} in this client.
    return consumer
      .assignment()
      .filter((x) => x.topic === topic)
      .map((x) => x.partition)
      .sort();
  } catch (e) {
    process.stderr.write(`assignment(): ${errText(e)}\n`);
    return null;
  }
}

async function group(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  const groupId = t.name('g');
  await createTopic(t, admin, topic, 4);
  const producer = await connectedProducer(t, kafka);
  t.stage = 'send 40 records';
  const perPartition = 10;
  const messages = [];
  for (let p = 0; p < 4; p++) for (let i = 0; i < perPartition; i++) messages.push({ partition: p, key: `p${p}`, value: `${p}-${i}` });
  await producer.send({ topic, messages });

  const consumed = [];
  const mk = async (name) => {
    const consumer = kafka.consumer(consumerConfig(groupId));
    t.defer(() => consumer.disconnect());
    await consumer.connect();
    await consumer.subscribe({ topics: [topic] });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        consumed.push({ member: name, partition, offset: Number(message.offset) });
      },
    });
    return consumer;
  };
  t.stage = 'two members join';
  const a = await mk('a');
  const b = await mk('b');
  t.stage = 'partitions split between the two members';
  let aa;
  let ba;
  await waitFor(
    () => {
      aa = assignmentOf(a, topic);
      ba = assignmentOf(b, topic);
      if (!aa || !ba || !aa.length || !ba.length) return false;
      return [...aa, ...ba].sort().join(',') === '0,1,2,3';
    },
    { timeoutMs: 20000, what: 'a split of 4 partitions' },
  ).catch((e) => {
    throw new Error(`${e.message}; last assignments a=${JSON.stringify(aa)} b=${JSON.stringify(ba)}`);
  });
  const split = `a=${aa} b=${ba}`;

  t.stage = 'consume all 40 records';
  await waitFor(() => new Set(consumed.map((c) => `${c.partition}@${c.offset}`)).size >= 40, { timeoutMs: 15000, what: '40 records consumed' });
  await sleep(700); // one auto-commit interval

  t.stage = 'member b leaves';
  await b.disconnect();
  t.stage = 'member a gets all partitions';
  await waitFor(() => (aa = assignmentOf(a, topic)) && aa.join(',') === '0,1,2,3', {
    timeoutMs: 15000,
    what: 'a to own all 4 partitions after b left',
  }).catch((e) => {
    throw new Error(`${e.message}; a's last assignment ${JSON.stringify(aa)}`);
  });

  t.stage = 'commits read back (fetchOffsets)';
  let last;
  await waitFor(
    async () => {
      last = await admin.fetchOffsets({ groupId, topics: [topic], timeout: 5000 });
      const parts = last[0] ? last[0].partitions : [];
      return parts.length === 4 && parts.every((p) => String(p.offset) === String(perPartition));
    },
    { timeoutMs: 10000, intervalMs: 300, what: 'committed offsets of 10 on all 4 partitions' },
  ).catch((e) => {
    throw new Error(`${e.message}; last fetchOffsets ${JSON.stringify(last)}`);
  });
  const dup = consumed.length - new Set(consumed.map((c) => `${c.partition}@${c.offset}`)).size;
  return { result: 'pass', detail: `split ${split}; ${dup} records redelivered across the rebalance` };
}

async function adminGroups(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  const groupId = t.name('g');
  await createTopic(t, admin, topic, 1);
  await produceNumbered(t, kafka, topic, 10);
  await consume(t, kafka, topic, { expect: 10, groupId });

  t.stage = 'fetchOffsets after consuming';
  let off;
  await waitFor(
    async () => {
      const r = await admin.fetchOffsets({ groupId, topics: [topic], timeout: 5000 });
      const p = r[0] && r[0].partitions.find((x) => x.partition === 0);
      off = p && String(p.offset);
      return off === '10';
    },
    { timeoutMs: 5000, intervalMs: 200, what: 'committed offset 10' },
  ).catch((e) => {
    throw new Error(`${e.message}; got ${off}`);
  });

  t.stage = 'listGroups';
  const lg = await admin.listGroups({ timeout: 5000 });
  const listed = lg.groups.find((g) => g.groupId === groupId);
  if (!listed) return { result: 'fail', detail: `listGroups lacks ${groupId}: ${JSON.stringify(lg).slice(0, 300)}` };
  if (listed.protocolType !== 'consumer') return { result: 'fail', detail: `listGroups protocolType ${listed.protocolType}` };

  t.stage = 'describeGroups';
  const dg = await admin.describeGroups([groupId], { timeout: 5000 });
  const desc = dg.groups.find((g) => g.groupId === groupId);
  // ConsumerGroupStates.EMPTY is 5 in this client.
  const emptyState = ckjs.KafkaJS.ConsumerGroupStates.EMPTY;
  if (!desc || desc.error || desc.members.length !== 0 || desc.state !== emptyState) {
    return { result: 'fail', detail: `describeGroups: expected an Empty group with no members, got ${JSON.stringify(desc).slice(0, 300)}` };
  }

  t.stage = 'deleteGroups';
  const del = await admin.deleteGroups([groupId], { timeout: 5000 });
  const dr = del.find((d) => d.groupId === groupId);
  if (!dr || dr.error) return { result: 'fail', detail: `deleteGroups: ${JSON.stringify(del)}` };
  t.stage = 'listGroups after delete';
  const lg2 = await admin.listGroups({ timeout: 5000 });
  if (lg2.groups.some((g) => g.groupId === groupId)) return { result: 'fail', detail: `${groupId} still listed after deleteGroups` };
  return { result: 'pass', detail: 'listGroups, describeGroups, fetchOffsets, deleteGroups (the client offers no call to alter or reset offsets)' };
}

async function idempotent(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 3);
  t.stage = 'idempotent producer connect';
  const producer = await connectedProducer(t, kafka, { idempotent: true });
  const records = makeRecords(300, 30);
  t.stage = 'idempotent send';
  for (let i = 0; i < records.length; i += 100) {
    await producer.send({ topic, messages: records.slice(i, i + 100) });
  }
  const got = await consume(t, kafka, topic, { expect: 300 });
  const problem = checkRecords(300, 30, 3, got);
  if (problem) return { result: 'fail', detail: problem };
}

async function transactions(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  const groupId = t.name('txn-group');
  await createTopic(t, admin, topic, 1);
  const { first, aborted, last } = txnBatches();
  // connect() runs init_transactions (FindCoordinator key_type=transaction, InitProducerId).
  const producer = await connectedProducer(t, kafka, { transactionalId: t.name('txn'), idempotent: true, transactionTimeout: 30000 });

  t.stage = 'transaction 1: transaction() (begin_transaction)';
  const one = await producer.transaction();
  t.stage = 'transaction 1: send 10 records (AddPartitionsToTxn, Produce)';
  await one.send({ topic, messages: first });
  t.stage = 'transaction 1: commit (EndTxn commit)';
  await one.commit();

  t.stage = 'transaction 2: transaction() (begin_transaction)';
  const two = await producer.transaction();
  t.stage = 'transaction 2: send 10 records (delivered: in the log)';
  await two.send({ topic, messages: aborted });
  t.stage = 'transaction 2: abort (EndTxn abort)';
  await two.abort();

  t.stage = 'transaction 3: transaction() (begin_transaction)';
  const three = await producer.transaction();
  t.stage = 'transaction 3: send 5 records';
  await three.send({ topic, messages: last });
  // This client's sendOffsets takes the group from a consumer (its group metadata), not a name.
  t.stage = `consumer of group ${groupId} connect (for sendOffsets)`;
  const member = kafka.consumer(consumerConfig(groupId, { autoCommit: false }));
  t.defer(() => member.disconnect());
  await member.connect();
  t.stage = `transaction 3: sendOffsets (AddOffsetsToTxn, TxnOffsetCommit) for group ${groupId}`;
  await three.sendOffsets({
    consumer: member,
    topics: [{ topic, partitions: [{ partition: 0, offset: String(TXN_GROUP_OFFSET) }] }],
  });
  t.stage = 'transaction 3: commit (EndTxn commit)';
  await three.commit();

  const [committed, uncommitted] = await Promise.all([
    consume(t, kafka, topic, { expect: txnExpected(true).length, graceMs: 500 }),
    consume(t, kafka, topic, { expect: txnExpected(false).length, graceMs: 500, readUncommitted: true }),
  ]);
  const problem = checkTxnRead('read_committed consumer', committed, true) || checkTxnRead('read_uncommitted consumer', uncommitted, false);
  if (problem) return { result: 'fail', detail: problem };

  t.stage = `read the group's offset back (consumer.committed, OffsetFetch for ${groupId})`;
  let got;
  await waitFor(
    async () => {
      got = await member.committed([{ topic, partition: 0 }], 5000);
      return got.length === 1 && String(got[0].offset) === String(TXN_GROUP_OFFSET);
    },
    { timeoutMs: 10000, intervalMs: 300, what: `offset ${TXN_GROUP_OFFSET} committed in transaction 3` },
  ).catch((e) => {
    throw new Error(`${e.message}; committed() for ${groupId} gives ${JSON.stringify(got)}`);
  });
  return {
    result: 'pass',
    detail: `read_committed read offsets ${offsetRuns(committed)}, read_uncommitted ${offsetRuns(uncommitted)}; group offset ${TXN_GROUP_OFFSET} read back`,
  };
}

// ---------------------------------------------------------------------------------------------
// Calls gregor does not serve yet. This client's admin offers no ACL or config calls, so
// only DeleteRecords is tried.

async function unsupportedCalls(driver, kafka) {
  let admin;
  let topic;
  // Setup shared by all lines (an admin, a topic with 10 records), made once; when it fails,
  // every line reports that failure as `fail`, never as the broker refusing the call.
  let setup = null;
  let setupError = null;
  const ensureAdmin = async (t) => {
    t.stage = 'setup: admin connect, createTopics, produce 10 records';
    if (setupError) throw setupError;
    if (!setup) {
      const name = t.name('t');
      setup = (async () => {
        admin = kafka.admin();
        await admin.connect();
        await admin.createTopics({ topics: [{ topic: name, numPartitions: 1 }], timeout: 5000 });
        const p = kafka.producer({ kafkaJS: { allowAutoTopicCreation: false }, 'linger.ms': 0 });
        await p.connect();
        await p.send({ topic: name, messages: [...Array(10).keys()].map((i) => ({ value: `v${i}` })) });
        await p.disconnect();
        topic = name;
        return admin;
      })();
    }
    try {
      return await withTimeout(setup, 10000, 'setup');
    } catch (e) {
      setupError = e;
      throw e;
    }
  };

  await driver.unsupported('delete_records', 'DeleteRecords (issue 9)', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('deleteTopicRecords');
    await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '5' }], timeout: 5000, operationTimeout: 5000 });
  });

  if (admin) await admin.disconnect().catch(() => {});
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { bootstrap } = parseArgs(process.argv.slice(2));
  const driver = new Driver({ client: CLIENT, version: VERSION });
  const kafka = makeKafka(bootstrap);
  const spec = (flow, fn, deadlineMs) => [flow, (t) => fn(t, kafka), { deadlineMs }];

  // Small parallel batches (own topics and groups each): most of the time is the broker's
  // group.initial.rebalance.delay.ms, which overlaps well.
  await driver.parallel([spec('list_topics', listTopics, 20000), spec('admin_topics', adminTopics, 30000)]);
  await driver.parallel([
    spec('produce_none', produceFlow('none', CompressionTypes.None), 40000),
    spec('produce_gzip', produceFlow('gzip', CompressionTypes.GZIP), 40000),
    spec('produce_snappy', produceFlow('snappy', CompressionTypes.SNAPPY), 40000),
    spec('produce_lz4', produceFlow('lz4', CompressionTypes.LZ4), 40000),
    spec('produce_zstd', produceFlow('zstd', CompressionTypes.ZSTD), 40000),
  ]);
  await driver.parallel([
    spec('consume_earliest', consumeEarliest, 30000),
    spec('consume_offset', consumeOffset, 30000),
    spec('consume_timestamp', consumeTimestamp, 30000),
  ]);
  await driver.parallel([
    spec('group', group, 60000),
    spec('admin_groups', adminGroups, 45000),
    spec('idempotent', idempotent, 30000),
    spec('transactions', transactions, 60000),
  ]);
  await unsupportedCalls(driver, kafka);
  driver.finish();
}

main().catch((e) => {
  process.stderr.write(`driver error: ${errText(e)}\n${e && e.stack}\n`);
  process.exit(1);
});
