/**
 * npm run bench: figures measured in one run on this machine, printed with the ratios that
 * matter (hypercall ÷ raw NATS round trip, guest start ÷ bare `node -e 0`, live ÷ model), so
 * they can be compared across machines. `--quick` runs a short version (CI); `--json <file>`
 * saves them; `--fidelity-only` runs only the live-vs-model part (bench/fidelity.ts);
 * `--storage-only` runs only the storage part (bench/storage.ts: thin vs thick clones, time to
 * clone, a snapshot chain against a flat disk).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import {
  HypercallReply,
  ManagementClient,
  decode,
  encode,
  guestInboxPrefix,
  heartbeatSubject,
  hypercallSubject,
  namespace,
  waitFor,
  type NatsConnection,
} from '@vmsim/shared';
import { startNatsServer, startStack } from '@vmsim/cli';
import { fidelity } from './fidelity.ts';
import { storage } from './storage.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    json: { type: 'string' },
    'fidelity-only': { type: 'boolean' },
    'storage-only': { type: 'boolean' },
  },
});
if (args['fidelity-only'] && args['storage-only']) {
  process.stderr.write('bench: --fidelity-only and --storage-only exclude each other\n');
  process.exit(2);
}
const quick = args.quick ?? false;
const N = quick ? 2_000 : 20_000;
const THROUGHPUT_MS = quick ? 1_500 : 5_000;
const SPAWNS = quick ? 5 : 15;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
function stats(samples: number[]): { p50: number; p99: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: pct(s, 50), p99: pct(s, 99), n: s.length };
}
const f3 = (x: number) => x.toFixed(3);

/** Sequential round trips of `call`, after a warm-up. */
async function latency(call: () => Promise<void>, n: number): Promise<{ p50: number; p99: number; n: number }> {
  for (let i = 0; i < Math.min(500, n / 4); i++) await call();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    out.push(performance.now() - t);
  }
  return stats(out);
}

/** Completed calls per second with `inFlight` outstanding at all times. */
async function throughput(call: () => Promise<void>, inFlight: number, ms: number): Promise<number> {
  let done = 0;
  const end = performance.now() + ms;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      await call();
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return done / ((performance.now() - t0) / 1000);
}

/** Proportional and private memory of a process, from /proc (kB → MiB). */
function memory(pid: number): { pssMiB: number; privateDirtyMiB: number; rssMiB: number } {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return { pssMiB: kb('Pss'), privateDirtyMiB: kb('Private_Dirty'), rssMiB: kb('Rss') };
}

async function main(): Promise<void> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-bench-'));
  const ns = `bench${process.pid}`;
  const results: Record<string, unknown> = {
    quick,
    node: process.version,
    cpus: os.cpus().length,
    date: new Date().toISOString(),
  };
  const log = (s: string) => process.stdout.write(`${s}\n`);
  log(`vmsim bench (${quick ? 'quick' : 'full'}) — node ${process.version}, ${os.cpus().length} cores`);

  const nats = await startNatsServer({ storeDir: path.join(home, 'nats'), logFile: path.join(home, 'nats.log') });
  try {
    const only = args['fidelity-only'] || args['storage-only'];
    if (!only) await mechanism(nats.url, home, ns, results, log);
    // After the first stack is gone: its idle guests would share this machine's cores.
    if (!args['storage-only']) {
      const fid = path.join(home, 'fidelity');
      results['fidelity'] = await fidelity({ natsUrl: nats.url, home: fid, ns: `${ns}f`, quick, log });
    }
    if (!args['fidelity-only']) {
      const sto = path.join(home, 'storage');
      results['storage'] = await storage({ natsUrl: nats.url, home: sto, ns: `${ns}s`, quick, log });
    }
  } finally {
    await nats.stop();
    fs.rmSync(home, { recursive: true, force: true });
  }
  if (args.json) {
    fs.writeFileSync(args.json, JSON.stringify(results, null, 2));
    log(`\nwritten ${args.json}`);
  }
}

/** Round trips, throughput, guest start-up and memory, on a stack at time scale 1. */
async function mechanism(
  natsUrl: string,
  home: string,
  ns: string,
  results: Record<string, unknown>,
  log: (s: string) => void,
): Promise<void> {
  // Time scale 1 and zero-cycle hypercalls: the device takes no modeled time, so what is
  // measured is the mechanism (bus hops, decoding, scheduling), not the model.
  const stack = await startStack({
    natsUrl,
    ns,
    host: 'host1',
    home,
    timeScale: 1,
    profile: 'small',
    scheduler: 'fair',
    hypervisorType: 'type1',
    overcommit: 1,
    detached: false,
    logLevel: 'warn',
    // Lets one compare guest Node flags: VMSIM_GUEST_NODE_ARGS="--max-semi-space-size=1" npm run bench
    ...(process.env['VMSIM_GUEST_NODE_ARGS'] !== undefined
      ? { env: { VMSIM_GUEST_NODE_ARGS: process.env['VMSIM_GUEST_NODE_ARGS'] } }
      : {}),
  });
  let nc: NatsConnection | undefined;
  let guest: NatsConnection | undefined;
  const echoProc = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { connect } from '@nats-io/transport-node';
       const nc = await connect({ servers: process.argv[1] });
       nc.subscribe('${ns}.echo', { callback: (_e, m) => m.respond(m.data) });
       await nc.flush(); process.stdout.write('ready\\n');`,
      natsUrl,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() },
  );
  try {
    nc = await connect({ servers: natsUrl });
    const api = new ManagementClient(nc, namespace(ns), 'host1', 30_000);
    await new Promise<void>((r) => echoProc.stdout!.once('data', () => r()));

    // 1. Raw one-hop request/reply against a responder in another process.
    const payload = encode({ op: 'cpu', cycles: 0 });
    const raw = await latency(async () => void (await nc!.request(`${ns}.echo`, payload)), N);

    // 2. Hypercalls of a real, running VM (this process speaks on its behalf, with its inbox).
    await api.call('define', { name: 'bench1', memoryMiB: 512, diskGiB: 1, vcpus: 4 });
    await api.call('start', { name: 'bench1' });
    await waitFor(
      async () => (await api.call('info', { name: 'bench1' })).state === 'running',
      60_000,
      'bench1 running',
    );
    guest = await connect({ servers: natsUrl, inboxPrefix: guestInboxPrefix(namespace(ns), 'bench1') });
    const hcSubject = hypercallSubject(namespace(ns), 'bench1');
    const hypercall = (body: Uint8Array) => async () => {
      const r = decode((await guest!.request(hcSubject, body, { timeout: 5000 })).data, HypercallReply);
      if (!r.ok) throw new Error(r.message);
    };
    const hc = await latency(hypercall(payload), N);
    const read4k = encode({ op: 'disk.read', disk: 0, offset: 64 * 1024 * 1024, length: 4096 });
    const rawTput = await throughput(async () => void (await nc!.request(`${ns}.echo`, payload)), 64, THROUGHPUT_MS);
    const cpuTput = await throughput(hypercall(payload), 64, THROUGHPUT_MS);
    const diskTput = await throughput(hypercall(read4k), 64, THROUGHPUT_MS);

    log('');
    log('round trip (wall ms)                     p50      p99');
    log(`raw NATS request/reply (1 hop)        ${f3(raw.p50).padStart(7)}  ${f3(raw.p99).padStart(7)}`);
    log(`hypercall cpu(0) via hypervisor       ${f3(hc.p50).padStart(7)}  ${f3(hc.p99).padStart(7)}`);
    log(
      `ratio hypercall ÷ raw                 ${(hc.p50 / raw.p50).toFixed(2).padStart(7)}  ${(hc.p99 / raw.p99).toFixed(2).padStart(7)}`,
    );
    log('');
    log('throughput, 64 in flight (per second)');
    log(`raw NATS request/reply                ${rawTput.toFixed(0).padStart(7)}`);
    log(
      `hypercall cpu(0), 4 vCPUs on 4 cores  ${cpuTput.toFixed(0).padStart(7)}   (${(cpuTput / rawTput).toFixed(2)} of raw)`,
    );
    log(
      `hypercall disk.read 4 KiB, QD 32      ${diskTput.toFixed(0).padStart(7)}   (${(diskTput / rawTput).toFixed(2)} of raw)`,
    );
    results['rawRoundTripMs'] = raw;
    results['hypercallRoundTripMs'] = hc;
    results['hypercallOverRaw'] = { p50: hc.p50 / raw.p50, p99: hc.p99 / raw.p99 };
    results['throughputPerS'] = { raw: rawTput, hypercallCpu: cpuTput, hypercallDiskRead4k: diskTput };

    // 3. Guest start-up: spawn → first heartbeat (process up, modules loaded, bus connected),
    //    against `node -e 0` spawned the same way from the same parent kind (a Node process).
    const bare: number[] = [];
    for (let i = 0; i < SPAWNS; i++) {
      const t = performance.now();
      await new Promise<void>((r) => spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).once('exit', () => r()));
      bare.push(performance.now() - t);
    }
    const up: number[] = [];
    const bootWall: number[] = [];
    for (let i = 0; i < SPAWNS; i++) {
      const name = `spawn${i}`;
      await api.call('define', { name, memoryMiB: 256, diskGiB: 0.125, os: 'bsd' });
      const first = new Promise<number>((r) => {
        const sub = nc!.subscribe(heartbeatSubject(namespace(ns), name), {
          max: 1,
          callback: () => r(performance.now()),
        });
        void sub;
      });
      await nc.flush();
      const t = performance.now();
      await api.call('start', { name });
      up.push((await first) - t);
      await waitFor(async () => (await api.call('info', { name })).state === 'running', 60_000, `${name} running`);
      bootWall.push(performance.now() - t);
    }
    const bareS = stats(bare);
    const upS = stats(up);
    log('');
    log('guest start-up (wall ms)                 p50');
    log(`node -e 0 (spawn → exit)              ${f3(bareS.p50).padStart(8)}`);
    log(`guest (spawn → first heartbeat)       ${f3(upS.p50).padStart(8)}   ratio ${(upS.p50 / bareS.p50).toFixed(2)}`);
    log(`guest (start → running, incl. the modeled boot of a bsd guest) ${f3(stats(bootWall).p50)}`);
    results['startupMs'] = {
      nodeE0: bareS,
      guestToHeartbeat: upS,
      guestToRunning: stats(bootWall),
      ratio: upS.p50 / bareS.p50,
    };

    // 4. Memory of idle guests (they have booted and wait for requests).
    await new Promise((r) => setTimeout(r, 1000));
    const { vms } = await api.call('list', {});
    const mems = vms.filter((v) => v.pid !== null && v.name.startsWith('spawn')).map((v) => memory(v.pid!));
    const pss = stats(mems.map((m) => m.pssMiB));
    const dirty = stats(mems.map((m) => m.privateDirtyMiB));
    const rss = stats(mems.map((m) => m.rssMiB));
    log('');
    log(
      `idle guest memory (MiB, median of ${mems.length}): PSS ${pss.p50.toFixed(1)}, Private_Dirty ${dirty.p50.toFixed(1)} (RSS ${rss.p50.toFixed(1)}, shared pages counted whole)`,
    );
    results['idleGuestMemoryMiB'] = { pss: pss.p50, privateDirty: dirty.p50, rss: rss.p50, guests: mems.length };
  } finally {
    echoProc.kill();
    await guest?.close();
    await nc?.close();
    await stack.stop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
