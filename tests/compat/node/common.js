'use strict';
// Shared helpers for the Node.js drivers of gregor's client-compatibility suite
// (tests/compat/README.md is the contract: command line, JSON lines, flows).

const crypto = require('crypto');

// Clients log through console.*; stdout carries only the JSON result lines.
const out = process.stdout;
for (const name of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[name] = (...args) => {
    const text = args.map((a) => (typeof a === 'string' ? a : safeJson(a))).join(' ');
    process.stderr.write(`${text}\n`);
  };
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch (_) {
    return String(value);
  }
}

function parseArgs(argv) {
  let bootstrap = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--bootstrap' && i + 1 < argv.length) bootstrap = argv[++i];
    else if (argv[i].startsWith('--bootstrap=')) bootstrap = argv[i].slice('--bootstrap='.length);
  }
  if (!bootstrap) {
    process.stderr.write('usage: <driver> --bootstrap HOST:PORT\n');
    process.exit(2);
  }
  return { bootstrap };
}

const FLOWS = [
  'list_topics',
  'admin_topics',
  'produce_none',
  'produce_gzip',
  'produce_snappy',
  'produce_lz4',
  'produce_zstd',
  'consume_earliest',
  'consume_offset',
  'consume_timestamp',
  'group',
  'admin_groups',
  'idempotent',
  'transactions',
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function suffix() {
  return crypto.randomBytes(4).toString('hex');
}

/** A unique topic or group name: a prefix of the flow name plus a random suffix. */
function uniqueName(flow, kind = '') {
  const base = flow.replace(/[^A-Za-z0-9._-]/g, '-');
  return `${base}${kind ? `-${kind}` : ''}-${suffix()}`;
}

function errText(e) {
  if (e === undefined || e === null) return String(e);
  if (typeof e !== 'object') return String(e);
  const parts = [];
  if (e.name && e.name !== 'Error') parts.push(e.name);
  if (e.type && e.type !== e.name) parts.push(e.type);
  if (e.code !== undefined && e.code !== null) parts.push(`code=${e.code}`);
  let msg = parts.length ? `${parts.join(' ')}: ${e.message}` : String(e.message || e);
  let nested = e.errors || (e.originalError ? [e.originalError] : e.cause ? [e.cause] : null);
  if (!nested && Array.isArray(e.partitions)) {
    // Per-partition errors (e.g. KafkaJSDeleteTopicRecordsError).
    nested = e.partitions.filter((p) => p && p.error).map((p) => p.error);
  }
  if (Array.isArray(nested) && nested.length) {
    msg += ` [${nested.slice(0, 3).map(errText).join('; ')}]`;
  }
  return msg.replace(/\s+/g, ' ').slice(0, 600);
}

class Timeout extends Error {}

const CONNECTION_TROUBLE = /ECONNREFUSED|ECONNRESET|EPIPE|Connection error|KafkaJSConnectionError|KafkaJSConnectionClosedError|ERR__TRANSPORT|ERR__ALL_BROKERS_DOWN|Broker not connected|Closed connection|Connection closed/i;

/** Races a promise against a timer; rejects with Timeout(label) when the timer wins. */
function withTimeout(promise, ms, label) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(`${label}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([Promise.resolve(promise), t]).finally(() => clearTimeout(timer));
}

/**
 * Runs the driver: one JSON line per flow, each flow under its own deadline, cleanups
 * (disconnects) after every flow whatever happened, a watchdog for the whole run, and a
 * forced exit at the end.
 */
class Driver {
  constructor({ client, version, totalBudgetMs = 170000 }) {
    this.client = client;
    this.version = version;
    this.reported = new Set();
    this.started = Date.now();
    this.pending = new Set(); // flows started and not yet reported
    this.finished = new Map(); // flow -> {result, detail}, finished but not yet reported
    this.watchdog = setTimeout(() => this.abortAll(), totalBudgetMs);
    process.on('unhandledRejection', (e) => process.stderr.write(`unhandled rejection: ${errText(e)}\n`));
    process.on('uncaughtException', (e) => process.stderr.write(`uncaught exception: ${errText(e)}\n`));
  }

  emit(flow, result, detail = '') {
    if (this.reported.has(flow)) return;
    this.reported.add(flow);
    const line = { client: this.client, version: this.version, flow, result, detail: String(detail || '') };
    out.write(`${JSON.stringify(line)}\n`);
    process.stderr.write(`[${((Date.now() - this.started) / 1000).toFixed(1)}s] ${flow}: ${result} ${detail || ''}\n`);
  }

  abortAll() {
    for (const flow of [...FLOWS, ...this.pending]) {
      const done = this.finished.get(flow);
      if (done) this.emit(flow, done.result, done.detail);
      else this.emit(flow, 'fail', 'driver watchdog: whole run exceeded its time budget before this flow finished');
    }
    process.exit(1);
  }

  /** Runs flows at once (each [flow, fn, opts]) and reports them in the order given. */
  async parallel(specs) {
    const results = await Promise.all(specs.map(([flow, fn, opts]) => this.runFlow(flow, fn, opts)));
    for (const r of results) this.report(r);
  }

  async flow(flow, fn, opts) {
    this.report(await this.runFlow(flow, fn, opts));
  }

  report({ flow, result, detail }) {
    this.emit(flow, result, detail);
    this.pending.delete(flow);
    this.finished.delete(flow);
  }

  /**
   * fn(t) gets a flow context: t.defer(cleanup), t.stage (a label that a timeout reports),
   * t.deadline (epoch ms), t.remaining(). fn returns nothing for pass, or {result, detail}.
   */
  async runFlow(flow, fn, { deadlineMs = 45000 } = {}) {
    this.pending.add(flow);
    const cleanups = [];
    const began = Date.now();
    let stage = 'start';
    const t = {
      flow,
      get stage() {
        return stage;
      },
      set stage(s) {
        stage = s;
        process.stderr.write(`  ${flow} +${((Date.now() - began) / 1000).toFixed(1)}s: ${s}\n`);
      },
      deadline: Date.now() + deadlineMs,
      remaining() {
        return Math.max(0, this.deadline - Date.now());
      },
      defer(cleanup) {
        cleanups.push(cleanup);
      },
      name(kind) {
        return uniqueName(flow, kind);
      },
    };
    let result;
    let detail;
    try {
      const r = await withTimeout(Promise.resolve().then(() => fn(t)), deadlineMs, `flow deadline`);
      result = (r && r.result) || 'pass';
      detail = (r && r.detail) || '';
    } catch (e) {
      result = 'fail';
      if (e instanceof Timeout) {
        detail = `timed out after ${(deadlineMs / 1000).toFixed(0)} s at stage "${t.stage}"`;
      } else {
        detail = `at stage "${t.stage}": ${errText(e)}`;
      }
    }
    // Cleanups last-registered first, each bounded, so a hung client never blocks the next flow.
    await withTimeout(
      Promise.allSettled(cleanups.reverse().map((c) => withTimeout(Promise.resolve().then(c), 5000, 'cleanup'))),
      8000,
      'cleanups',
    ).catch(() => {});
    process.stderr.write(`${flow}: ${result} after ${((Date.now() - began) / 1000).toFixed(1)} s\n`);
    this.finished.set(flow, { result, detail });
    return { flow, result, detail };
  }

  /**
   * One `unsupported:<call>` line: xfail when the client answers with an error within
   * limitMs, pass when the call works, fail when it hangs.
   */
  async unsupported(call, api, fn, { limitMs = 15000 } = {}) {
    const flow = `unsupported:${call}`;
    this.pending.add(flow);
    const cleanups = [];
    // Errors before t.calling() (connecting, creating a topic to work on) are setup failures,
    // not the broker refusing the call: those are `fail`.
    let calling = false;
    const t = {
      stage: 'start',
      defer: (c) => cleanups.push(c),
      name: (k) => uniqueName(`unsupported-${call}`, k),
      calling(stage) {
        calling = true;
        this.stage = stage;
      },
    };
    const began = Date.now();
    let result;
    let detail;
    try {
      await withTimeout(Promise.resolve().then(() => fn(t)), limitMs, call);
      result = 'pass';
      detail = `${api} worked`;
    } catch (e) {
      const secs = ((Date.now() - began) / 1000).toFixed(1);
      if (!calling) {
        result = 'fail';
        detail = `setup for ${api} failed after ${secs} s at stage "${t.stage}": ${errText(e)}`;
      } else if (e instanceof Timeout) {
        result = 'fail';
        detail = `${api}: no answer within ${limitMs / 1000} s (hangs) at stage "${t.stage}"`;
      } else if (CONNECTION_TROUBLE.test(errText(e))) {
        result = 'fail';
        detail = `${api}: connection trouble, not a refusal, after ${secs} s at stage "${t.stage}": ${errText(e)}`;
      } else {
        result = 'xfail';
        detail = `${api} not served by gregor; client error after ${secs} s at stage "${t.stage}": ${errText(e)}`;
      }
    }
    await withTimeout(
      Promise.allSettled(cleanups.reverse().map((c) => withTimeout(Promise.resolve().then(c), 5000, 'cleanup'))),
      8000,
      'cleanups',
    ).catch(() => {});
    this.report({ flow, result, detail });
  }

  finish() {
    clearTimeout(this.watchdog);
    process.stderr.write(`driver done in ${((Date.now() - this.started) / 1000).toFixed(1)} s\n`);
    // Clients may keep sockets or native threads alive; the run is over.
    setTimeout(() => process.exit(0), 50);
  }
}

// ---------------------------------------------------------------------------------------------
// Records for the produce flows: 1,000 records, 100 keys, a per-key sequence number.

function makeRecords(n = 1000, keys = 100) {
  const records = [];
  for (let i = 0; i < n; i++) {
    const k = i % keys;
    records.push({ key: `key-${k}`, value: JSON.stringify({ i, k, seq: Math.floor(i / keys) }) });
  }
  return records;
}

/**
 * consumed: [{key, value, partition, offset}] in the order the consumer delivered them.
 * Returns null when every record came back once, per-key order kept and each key stayed in
 * one partition; else a description of the first problems found.
 */
function checkRecords(n, keys, partitions, consumed) {
  const problems = [];
  const seen = new Map();
  const keyPartition = new Map();
  const keyLastSeq = new Map();
  const partitionsUsed = new Set();
  for (const m of consumed) {
    let v;
    try {
      v = JSON.parse(m.value);
    } catch (_) {
      problems.push(`unparsable value at p${m.partition}@${m.offset}`);
      continue;
    }
    const key = `key-${v.k}`;
    if (m.key !== key) problems.push(`record ${v.i}: key ${m.key} != ${key}`);
    if (seen.has(v.i)) {
      problems.push(`record ${v.i} seen twice (p${seen.get(v.i)} and p${m.partition}@${m.offset})`);
      continue;
    }
    seen.set(v.i, `${m.partition}@${m.offset}`);
    partitionsUsed.add(m.partition);
    if (keyPartition.has(key) && keyPartition.get(key) !== m.partition) {
      problems.push(`${key} in partitions ${keyPartition.get(key)} and ${m.partition}`);
    }
    keyPartition.set(key, m.partition);
    const last = keyLastSeq.has(key) ? keyLastSeq.get(key) : -1;
    if (v.seq <= last) problems.push(`${key}: seq ${v.seq} after ${last} (order broken)`);
    keyLastSeq.set(key, v.seq);
  }
  if (seen.size !== n) {
    const missing = [];
    for (let i = 0; i < n && missing.length < 5; i++) if (!seen.has(i)) missing.push(i);
    problems.push(`expected ${n} distinct records, got ${seen.size} (of ${consumed.length} delivered); missing e.g. ${missing.join(',')}`);
  }
  if (keyPartition.size !== keys) problems.push(`expected ${keys} keys, got ${keyPartition.size}`);
  if (partitions && partitionsUsed.size !== partitions) {
    problems.push(`records landed on ${partitionsUsed.size} of ${partitions} partitions (${[...partitionsUsed].sort().join(',')})`);
  }
  return problems.length ? problems.slice(0, 5).join('; ') : null;
}

// ---------------------------------------------------------------------------------------------
// The transactions flow: three transactions on a 1-partition topic (commit, abort, commit).

/** The offset committed for a group inside the last transaction (TxnOffsetCommit). */
const TXN_GROUP_OFFSET = 10;

/** The messages of the three transactions: committed, aborted, committed. */
function txnBatches() {
  const batch = (tag, n) => [...Array(n).keys()].map((i) => ({ key: `k${i}`, value: `${tag}-${i}`, partition: 0 }));
  return { first: batch('commit1', 10), aborted: batch('abort', 10), last: batch('commit2', 5) };
}

function txnExpected(readCommitted) {
  const { first, aborted, last } = txnBatches();
  return [...first, ...(readCommitted ? [] : aborted), ...last].map((m) => m.value);
}

/**
 * got: [{offset, value}] as a consumer delivered them. Returns null when the values are exactly
 * the expected ones in order at increasing offsets; else what went wrong.
 */
function checkTxnRead(what, got, readCommitted) {
  const want = txnExpected(readCommitted);
  const values = got.map((m) => m.value);
  let wrong = values.findIndex((v, i) => v !== want[i]);
  if (wrong < 0 && values.length !== want.length) wrong = Math.min(values.length, want.length);
  if (wrong >= 0) {
    const shown = got.slice(wrong, wrong + 3).map((m) => `${m.offset}:${m.value}`);
    return `${what} read ${values.length} records, expected ${want.length}; first difference at record ${wrong}: got ${JSON.stringify(shown)}, expected ${JSON.stringify(want.slice(wrong, wrong + 3))}`;
  }
  const offsets = got.map((m) => m.offset);
  if (offsets.some((o, i) => i > 0 && o <= offsets[i - 1])) return `${what} read the expected values at offsets ${offsets.join(',')}, which do not increase`;
  return null;
}

/** '0-9,22-26' for offsets 0..9 and 22..26. */
function offsetRuns(got) {
  const runs = [];
  for (const { offset } of got) {
    if (runs.length && offset === runs[runs.length - 1][1] + 1) runs[runs.length - 1][1] = offset;
    else runs.push([offset, offset]);
  }
  return runs.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}

/** A promise that resolves when predicate() becomes true (polled), or rejects at the deadline. */
async function waitFor(predicate, { timeoutMs = 20000, intervalMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    await sleep(intervalMs);
  }
}

/** A logger for both clients' KafkaJS-style logCreator/logger hooks, writing to stderr. */
function stderrLog(prefix, { level, label, namespace, log }) {
  const extra = Object.assign({}, log);
  delete extra.message;
  delete extra.timestamp;
  delete extra.logger;
  process.stderr.write(`${prefix} ${label || level} [${namespace || ''}] ${log.message} ${safeJson(extra)}\n`);
}

module.exports = {
  FLOWS,
  Driver,
  TXN_GROUP_OFFSET,
  Timeout,
  checkRecords,
  checkTxnRead,
  errText,
  makeRecords,
  offsetRuns,
  parseArgs,
  safeJson,
  sleep,
  stderrLog,
  txnBatches,
  txnExpected,
  uniqueName,
  waitFor,
  withTimeout,
};
