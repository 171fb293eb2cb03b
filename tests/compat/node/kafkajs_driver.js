#!/usr/bin/env node
'use strict';
// kafkajs driver for gregor's client-compatibility suite (see ../README.md).
//   node kafkajs_driver.js --bootstrap 127.0.0.1:9092

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

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
  stderrLog,
  txnBatches,
  txnExpected,
  waitFor,
  withTimeout,
} = require('./common');
const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  AclResourceTypes,
  AclOperationTypes,
  AclPermissionTypes,
  ResourcePatternTypes,
} = require('kafkajs');

const CLIENT = 'kafkajs';
const VERSION = require('kafkajs/package.json').version;

// ---------------------------------------------------------------------------------------------
// Codecs: kafkajs has gzip built in; snappy, lz4 and zstd come from npm packages.

const codecProblems = {};

try {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy');
} catch (e) {
  codecProblems.snappy = `kafkajs-snappy did not load: ${errText(e)}`;
}

try {
  const LZ4Codec = require('kafkajs-lz4');
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec;
} catch (e) {
  codecProblems.lz4 = `kafkajs-lz4 did not load: ${errText(e)}`;
}

// @kafkajs/zstd does not build on Node 20 (its native cppzst 2.0.6 fails to compile), so zstd
// comes from the WebAssembly build in @bokuweb/zstd-wasm behind kafkajs' codec interface.
try {
  const zstd = require('@bokuweb/zstd-wasm');
  let ready = null;
  const init = () => (ready = ready || zstd.init());
  CompressionCodecs[CompressionTypes.ZSTD] = () => ({
    async compress(encoder) {
      await init();
      return Buffer.from(zstd.compress(encoder.buffer, 3));
    },
    async decompress(buffer) {
      await init();
      return Buffer.from(zstd.decompress(buffer));
    },
  });
} catch (e) {
  codecProblems.zstd = `@bokuweb/zstd-wasm did not load: ${errText(e)}`;
}

// ---------------------------------------------------------------------------------------------

const RETRY = { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 };

function makeKafka(bootstrap, { retry = RETRY, requestTimeout = 10000 } = {}) {
  return new Kafka({
    clientId: 'gregor-compat-kafkajs',
    brokers: [bootstrap],
    connectionTimeout: 3000,
    requestTimeout,
    retry,
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => stderrLog('kafkajs', entry),
  });
}

async function connectedAdmin(t, kafka) {
  const admin = kafka.admin({ retry: RETRY });
  t.defer(() => admin.disconnect());
  t.stage = 'admin connect';
  await admin.connect();
  return admin;
}

async function createTopic(t, admin, topic, numPartitions, configEntries) {
  t.stage = `createTopics ${topic}`;
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
    timeout: 10000,
  });
  if (!created) throw new Error(`createTopics returned false for ${topic} (already exists?)`);
}

async function connectedProducer(t, kafka, opts = {}) {
  const producer = kafka.producer({ allowAutoTopicCreation: false, retry: RETRY, ...opts });
  t.defer(() => producer.disconnect());
  await producer.connect();
  return producer;
}

function toPlain(partition, message) {
  return {
    key: message.key === null ? null : message.key.toString(),
    value: message.value === null ? null : message.value.toString(),
    partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
  };
}

/**
 * Consumes `topic` in a fresh group (or `groupId`) until `expect` records arrived, then waits
 * `graceMs` for extras (duplicates) and disconnects. `seek` is applied right after run().
 */
async function consume(t, kafka, topic, { expect, groupId, fromBeginning = true, seek, graceMs = 300, readUncommitted = false }) {
  const consumer = kafka.consumer({
    groupId: groupId || t.name('g'),
    heartbeatInterval: 500,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 200,
    readUncommitted,
    retry: RETRY,
  });
  t.defer(() => consumer.disconnect());
  const got = [];
  let done;
  let failed;
  const finished = new Promise((resolve, reject) => {
    done = resolve;
    failed = reject;
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) failed(new Error(`consumer crashed: ${errText(payload.error)}`));
    else process.stderr.write(`kafkajs consumer crashed, restarting: ${errText(payload.error)}\n`);
  });
  t.stage = 'consumer connect';
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning });
  t.stage = `consume ${expect} records from ${topic}`;
  await consumer.run({
    autoCommit: true,
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
  t.stage = 'listTopics';
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) {
    return { result: 'fail', detail: `listTopics (${topics.length} topics) lacks the topic just created (${topic})` };
  }
}

async function adminTopics(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 3, [{ name: 'retention.ms', value: '3600000' }]);

  t.stage = 'fetchTopicMetadata';
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  const tm = md.topics.find((x) => x.name === topic);
  if (!tm) return { result: 'fail', detail: `fetchTopicMetadata has no ${topic}` };
  const ids = tm.partitions.map((p) => p.partitionId).sort();
  if (ids.join(',') !== '0,1,2') return { result: 'fail', detail: `expected partitions 0,1,2, got ${ids.join(',')}` };
  const bad = tm.partitions.filter((p) => p.partitionErrorCode !== 0 || p.leader < 0);
  if (bad.length) return { result: 'fail', detail: `partitions without leader: ${JSON.stringify(bad)}` };

  t.stage = 'describeConfigs';
  const dc = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  });
  const res = dc.resources[0];
  if (!res || res.errorCode !== 0) return { result: 'fail', detail: `describeConfigs error: ${JSON.stringify(res)}` };
  const entry = res.configEntries.find((e) => e.configName === 'retention.ms');
  if (!entry || entry.configValue !== '3600000') {
    return { result: 'fail', detail: `describeConfigs retention.ms: expected 3600000, got ${JSON.stringify(entry)}` };
  }

  t.stage = 'deleteTopics';
  await admin.deleteTopics({ topics: [topic], timeout: 10000 });
  t.stage = 'listTopics after delete';
  await waitFor(async () => !(await admin.listTopics()).includes(topic), {
    timeoutMs: 10000,
    intervalMs: 200,
    what: `${topic} to disappear from listTopics`,
  });
}

function produceFlow(codecName, type) {
  return async (t, kafka) => {
    if (codecProblems[codecName]) return { result: 'skip', detail: codecProblems[codecName] };
    const admin = await connectedAdmin(t, kafka);
    const topic = t.name('t');
    await createTopic(t, admin, topic, 3);
    const producer = await connectedProducer(t, kafka);
    const records = makeRecords(1000, 100);
    t.stage = `send 1000 records (${codecName})`;
    // Ten sends of 100 records: several batches per partition.
    for (let i = 0; i < records.length; i += 100) {
      await producer.send({ topic, compression: type, acks: -1, messages: records.slice(i, i + 100) });
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
  await producer.send({ topic, acks: -1, messages });
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
  const found = await admin.fetchTopicOffsetsByTimestamp(topic, target);
  const p0 = found.find((p) => p.partition === 0);
  if (!p0 || p0.offset !== '5') return { result: 'fail', detail: `ListOffsets for timestamp: expected offset 5, got ${JSON.stringify(found)}` };
  const got = await consume(t, kafka, topic, { expect: 5, seek: { partition: 0, offset: p0.offset } });
  if (got[0].offset !== 5 || got[0].timestamp !== timestamps[5]) {
    return { result: 'fail', detail: `first record after seek: offset ${got[0].offset} timestamp ${got[0].timestamp}, expected 5 / ${timestamps[5]}` };
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
  await producer.send({ topic, acks: -1, messages });

  const members = {};
  const consumed = [];
  const mk = async (name) => {
    const consumer = kafka.consumer({
      groupId,
      heartbeatInterval: 500,
      sessionTimeout: 10000,
      rebalanceTimeout: 10000,
      maxWaitTimeInMs: 200,
      retry: RETRY,
    });
    const m = { name, consumer, assignment: null, joins: 0 };
    members[name] = m;
    t.defer(() => consumer.disconnect());
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      m.assignment = (payload.memberAssignment[topic] || []).slice().sort();
      m.joins++;
      process.stderr.write(`group member ${name} joined: ${JSON.stringify(payload.memberAssignment)}\n`);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: true,
      eachMessage: async ({ partition, message }) => {
        consumed.push({ member: name, partition, offset: Number(message.offset) });
      },
    });
    return m;
  };
  t.stage = 'two members join';
  const a = await mk('a');
  const b = await mk('b');
  t.stage = 'partitions split between the two members';
  await waitFor(
    () => {
      if (!a.assignment || !b.assignment || !a.assignment.length || !b.assignment.length) return false;
      const all = [...a.assignment, ...b.assignment].sort();
      return all.join(',') === '0,1,2,3';
    },
    { timeoutMs: 20000, what: `a split of 4 partitions (a=${a.assignment} b=${b.assignment})` },
  ).catch((e) => {
    throw new Error(`${e.message}; last assignments a=${JSON.stringify(a.assignment)} b=${JSON.stringify(b.assignment)}`);
  });
  const split = `a=${a.assignment} b=${b.assignment}`;

  t.stage = 'consume all 40 records';
  await waitFor(() => new Set(consumed.map((c) => `${c.partition}@${c.offset}`)).size >= 40, { timeoutMs: 15000, what: '40 records consumed' });

  t.stage = 'member b leaves';
  await b.consumer.disconnect();
  t.stage = 'member a gets all partitions';
  await waitFor(() => a.assignment && a.assignment.join(',') === '0,1,2,3', {
    timeoutMs: 15000,
    what: 'a to own all 4 partitions after b left',
  }).catch((e) => {
    throw new Error(`${e.message}; a's last assignment ${JSON.stringify(a.assignment)}`);
  });

  t.stage = 'commits read back (fetchOffsets)';
  let last;
  await waitFor(
    async () => {
      last = await admin.fetchOffsets({ groupId, topics: [topic] });
      const parts = last[0].partitions;
      return parts.length === 4 && parts.every((p) => p.offset === String(perPartition));
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

  const offsetOf = async () => {
    const r = await admin.fetchOffsets({ groupId, topics: [topic] });
    return r[0].partitions.find((p) => p.partition === 0).offset;
  };
  t.stage = 'fetchOffsets after consuming';
  let off;
  await waitFor(async () => (off = await offsetOf()) === '10', { timeoutMs: 5000, intervalMs: 200, what: 'committed offset 10' }).catch((e) => {
    throw new Error(`${e.message}; got ${off}`);
  });

  t.stage = 'listGroups';
  const lg = await admin.listGroups();
  const listed = lg.groups.find((g) => g.groupId === groupId);
  if (!listed) return { result: 'fail', detail: `listGroups lacks ${groupId}: ${JSON.stringify(lg.groups).slice(0, 300)}` };
  if (listed.protocolType !== 'consumer') return { result: 'fail', detail: `listGroups protocolType ${listed.protocolType}` };

  t.stage = 'describeGroups';
  const dg = await admin.describeGroups([groupId]);
  const desc = dg.groups.find((g) => g.groupId === groupId);
  if (!desc || desc.errorCode !== 0 || desc.state !== 'Empty' || desc.members.length !== 0) {
    return { result: 'fail', detail: `describeGroups: expected Empty group with no members, got ${JSON.stringify(desc)}` };
  }

  t.stage = 'setOffsets to 3';
  await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '3' }] });
  t.stage = 'fetchOffsets after setOffsets';
  off = await offsetOf();
  if (off !== '3') return { result: 'fail', detail: `after setOffsets(3), fetchOffsets says ${off}` };

  t.stage = 'resetOffsets to earliest';
  await admin.resetOffsets({ groupId, topic, earliest: true });
  t.stage = 'fetchOffsets after resetOffsets';
  off = await offsetOf();
  if (off !== '0' && off !== '-2') return { result: 'fail', detail: `after resetOffsets(earliest), fetchOffsets says ${off}` };

  t.stage = 'deleteGroups';
  const del = await admin.deleteGroups([groupId]);
  const dr = del.find((d) => d.groupId === groupId);
  if (!dr || dr.errorCode !== 0) return { result: 'fail', detail: `deleteGroups: ${JSON.stringify(del)}` };
  t.stage = 'listGroups after delete';
  const lg2 = await admin.listGroups();
  if (lg2.groups.some((g) => g.groupId === groupId)) return { result: 'fail', detail: `${groupId} still listed after deleteGroups` };
  return { result: 'pass', detail: `listGroups, describeGroups, fetchOffsets, setOffsets, resetOffsets (read back ${off}), deleteGroups` };
}

async function idempotent(t, kafka) {
  const admin = await connectedAdmin(t, kafka);
  const topic = t.name('t');
  await createTopic(t, admin, topic, 3);
  t.stage = 'idempotent producer connect';
  const producer = await connectedProducer(t, kafka, { idempotent: true, maxInFlightRequests: 1 });
  const records = makeRecords(300, 30);
  t.stage = 'idempotent send';
  for (let i = 0; i < records.length; i += 100) {
    await producer.send({ topic, acks: -1, messages: records.slice(i, i + 100) });
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
  t.stage = 'transactional producer connect';
  const producer = await connectedProducer(t, kafka, {
    transactionalId: t.name('txn'),
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 30000,
  });

  t.stage = 'transaction 1: transaction() (FindCoordinator key_type=transaction, InitProducerId)';
  const one = await producer.transaction();
  t.stage = 'transaction 1: send 10 records (AddPartitionsToTxn, Produce)';
  await one.send({ topic, acks: -1, messages: first });
  t.stage = 'transaction 1: commit (EndTxn commit)';
  await one.commit();

  t.stage = 'transaction 2: transaction()';
  const two = await producer.transaction();
  t.stage = 'transaction 2: send 10 records (acknowledged: in the log)';
  await two.send({ topic, acks: -1, messages: aborted });
  t.stage = 'transaction 2: abort (EndTxn abort)';
  await two.abort();

  t.stage = 'transaction 3: transaction()';
  const three = await producer.transaction();
  t.stage = 'transaction 3: send 5 records';
  await three.send({ topic, acks: -1, messages: last });
  t.stage = `transaction 3: sendOffsets (AddOffsetsToTxn, TxnOffsetCommit) for group ${groupId}`;
  await three.sendOffsets({
    consumerGroupId: groupId,
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

  t.stage = `read the group's offset back (admin.fetchOffsets, OffsetFetch for ${groupId})`;
  let last0;
  await waitFor(
    async () => {
      const r = await admin.fetchOffsets({ groupId, topics: [topic] });
      last0 = r[0] && r[0].partitions.find((p) => p.partition === 0);
      return last0 && last0.offset === String(TXN_GROUP_OFFSET);
    },
    { timeoutMs: 10000, intervalMs: 300, what: `offset ${TXN_GROUP_OFFSET} committed in transaction 3` },
  ).catch((e) => {
    throw new Error(`${e.message}; fetchOffsets for ${groupId} gives ${JSON.stringify(last0)}`);
  });
  return {
    result: 'pass',
    detail: `read_committed read offsets ${offsetRuns(committed)}, read_uncommitted ${offsetRuns(uncommitted)}; group offset ${TXN_GROUP_OFFSET} read back`,
  };
}

// ---------------------------------------------------------------------------------------------
// Admin calls and features gregor does not serve yet.

async function unsupportedCalls(driver, bootstrap) {
  // Few retries and a short request timeout, so a refused call fails fast.
  const fast = { retries: 1, initialRetryTime: 100, maxRetryTime: 500 };
  const kafka = makeKafka(bootstrap, { retry: fast, requestTimeout: 5000 });
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
        admin = kafka.admin({ retry: fast });
        await admin.connect();
        await admin.createTopics({ topics: [{ topic: name, numPartitions: 1 }], waitForLeaders: true });
        const p = kafka.producer({ retry: fast, allowAutoTopicCreation: false });
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
  const aclFilter = () => ({
    resourceType: AclResourceTypes.TOPIC,
    resourceName: topic,
    resourcePatternType: ResourcePatternTypes.LITERAL,
    principal: 'User:compat',
    host: '*',
    operation: AclOperationTypes.READ,
    permissionType: AclPermissionTypes.ALLOW,
  });

  await driver.unsupported('alter_configs', 'AlterConfigs (issue 9)', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('alterConfigs');
    await a.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
    });
  });

  await driver.unsupported('create_acls', 'CreateAcls', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('createAcls');
    await a.createAcls({ acl: [aclFilter()] });
  });

  await driver.unsupported('describe_acls', 'DescribeAcls', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('describeAcls');
    await a.describeAcls(aclFilter());
  });

  await driver.unsupported('delete_acls', 'DeleteAcls', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('deleteAcls');
    await a.deleteAcls({ filters: [aclFilter()] });
  });

  await driver.unsupported('delete_records', 'DeleteRecords (issue 9)', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('deleteTopicRecords');
    await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '5' }] });
  });

  await driver.unsupported('alter_partition_reassignments', 'AlterPartitionReassignments', async (t) => {
    const a = await ensureAdmin(t);
    t.stage = 'describeCluster';
    const { brokers } = await a.describeCluster();
    t.calling('alterPartitionReassignments');
    await a.alterPartitionReassignments({
      topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [brokers[0].nodeId] }] }],
      timeout: 5000,
    });
  });

  await driver.unsupported('list_partition_reassignments', 'ListPartitionReassignments', async (t) => {
    const a = await ensureAdmin(t);
    t.calling('listPartitionReassignments');
    await a.listPartitionReassignments({ topics: [{ topic, partitions: [0] }], timeout: 5000 });
  });

  if (admin) await admin.disconnect().catch(() => {});
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const { bootstrap } = parseArgs(process.argv.slice(2));
  const driver = new Driver({ client: CLIENT, version: VERSION });
  const kafka = makeKafka(bootstrap);
  const spec = (flow, fn, deadlineMs) => [flow, (t) => fn(t, kafka), { deadlineMs }];

  // Flows run in small parallel batches (own topics and groups each): most of their time is
  // the broker's group.initial.rebalance.delay.ms, which overlaps well.
  await driver.parallel([spec('list_topics', listTopics, 20000), spec('admin_topics', adminTopics, 30000)]);
  await driver.parallel([
    spec('produce_none', produceFlow('none', CompressionTypes.None), 40000),
    spec('produce_gzip', produceFlow('gzip', CompressionTypes.GZIP), 40000),
    spec('produce_snappy', produceFlow('snappy', CompressionTypes.Snappy), 40000),
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
    spec('admin_groups', adminGroups, 60000),
    spec('idempotent', idempotent, 30000),
    spec('transactions', transactions, 60000),
  ]);
  await unsupportedCalls(driver, bootstrap);
  driver.finish();
}

main().catch((e) => {
  process.stderr.write(`driver error: ${errText(e)}\n${e && e.stack}\n`);
  process.exit(1);
});
