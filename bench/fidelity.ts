/**
 * Live against model, for `npm run bench`: the figures the unit tests check in virtual time
 * (a disk's mean response under Poisson arrivals; equal and 1:2:4 CPU shares; a CPU
 * reservation), measured on a running stack in real time, on a stack of its own.
 *
 * The disk is one added to the `small` profile ahead of its own, just big enough for the one
 * VM that reads from it (the others land on the `small` disks): bandwidth-bound with no fixed
 * latency, so its service time is the transfer time and exponential request sizes give
 * exponential service times, as in the unit test; slow enough that one service lasts several
 * wall ms at the time scale used. What is measured is how far the bus, timers and processes
 * move the figures, not how fast a disk is. The model value is Pollaczek–Khinchine's M/G/1 mean
 * response from the moments of the service times actually issued (sizes are capped at one
 * hypercall's limit, so they are not quite exponential); `replay` runs the very same arrivals
 * and sizes through the pure disk model in virtual time, which takes the sampling noise of a
 * short run out of the comparison.
 */
import fs from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { DiskTiming, loadProfile } from '@vmsim/host-agent';
import {
  HypercallReply,
  MAX_IO_BYTES,
  ManagementClient,
  VirtualClock,
  createRng,
  decode,
  encode,
  guestInboxPrefix,
  hypercallSubject,
  namespace,
  waitFor,
  type HardwareProfile,
  type NatsConnection,
} from '@vmsim/shared';
import { startStack } from '@vmsim/cli';

export interface FidelityOptions {
  natsUrl: string;
  /** A scratch directory for the stack. */
  home: string;
  ns: string;
  quick: boolean;
  log: (line: string) => void;
}

/** Wall ms per simulated ms on the fidelity stack. */
const TIME_SCALE = 5;
/** Services of a few wall ms; sizes (so services) exponential, their mean far below the 256 KiB cap. */
const DISK_MBPS = 20;
const MEAN_BYTES = 32 * 1024;
const RHOS = [0.5, 0.8] as const;
const VCPUS = 4;
/** Simulated ms of one CPU burst: 10 wall ms at the time scale, long against a bus hop. */
const BURST_MS = 2;
const OUTSTANDING = 2 * VCPUS;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const jain = (xs: number[]) => xs.reduce((a, b) => a + b, 0) ** 2 / (xs.length * xs.reduce((a, b) => a + b * b, 0));
const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Arrival {
  /** Simulated ms from the start of the run. */
  at: number;
  bytes: number;
  offset: number;
}

/** Poisson arrivals at `rho` of the disk's service rate, sizes exponential (capped), for `wallMs`. */
function plan(seed: string, rho: number, timing: DiskTiming, diskBytes: number, wallMs: number) {
  const rng = createRng(seed);
  const sizes: number[] = [];
  // Draw the sizes first: the arrival rate is set from their mean service time, so ρ is exact.
  const horizon = wallMs / TIME_SCALE;
  const guess = Math.ceil((horizon / timing.occupancyMs(MEAN_BYTES)) * rho * 1.5) + 100;
  for (let i = 0; i < guess; i++) sizes.push(Math.min(MAX_IO_BYTES, Math.max(1, Math.round(rng.exp(MEAN_BYTES)))));
  const service = sizes.map((b) => timing.occupancyMs(b));
  const meanS = mean(service);
  const lambda = rho / meanS;
  const arrivals: Arrival[] = [];
  let t = 0;
  for (const bytes of sizes) {
    t += rng.exp(1 / lambda);
    if (t > horizon) break;
    const offset = rng.int(Math.floor((diskBytes - MAX_IO_BYTES) / 4096)) * 4096;
    arrivals.push({ at: t, bytes, offset });
  }
  const s = arrivals.map((a) => timing.occupancyMs(a.bytes));
  const es = mean(s);
  const es2 = mean(s.map((x) => x * x));
  return { arrivals, lambda, es, es2 };
}

/** The same arrivals through the pure disk model (and a FIFO in front, as one VM's queue is). */
function replay(arrivals: Arrival[], disk: HardwareProfile['disks'][number]): number[] {
  const clock = new VirtualClock();
  const timing = new DiskTiming(disk);
  const queue: number[] = [];
  const response = new Array<number>(arrivals.length);
  const tryStart = (): void => {
    while (queue.length > 0) {
      const i = queue[0]!;
      const slot = timing.start('read', arrivals[i]!.bytes, clock.now());
      if (!slot) return;
      queue.shift();
      clock.at(slot.doneAt, () => {
        timing.finish();
        response[i] = clock.now() - arrivals[i]!.at;
        tryStart();
      });
    }
  };
  arrivals.forEach((a, i) =>
    clock.at(a.at, () => {
      queue.push(i);
      tryStart();
    }),
  );
  clock.runAll();
  return response;
}

/**
 * Sends the arrivals at their wall times (simulated × time scale) and measures each response
 * from its *intended* send time, so a late timer in this process counts against the system.
 */
async function openLoop(guest: NatsConnection, subject: string, arrivals: Arrival[]) {
  const wall = new Array<number>(arrivals.length);
  const device = new Array<number>(arrivals.length);
  /** Wall ms each request left this process after its intended time (this process's own share). */
  const late = new Array<number>(arrivals.length);
  const pending: Promise<void>[] = [];
  const t0 = performance.now() + 50;
  let i = 0;
  await new Promise<void>((done) => {
    const tick = (): void => {
      const now = performance.now();
      while (i < arrivals.length && t0 + arrivals[i]!.at * TIME_SCALE <= now) {
        const k = i++;
        const a = arrivals[k]!;
        const intended = t0 + a.at * TIME_SCALE;
        late[k] = now - intended;
        const body = encode({ op: 'disk.read', disk: 0, offset: a.offset, length: a.bytes });
        pending.push(
          guest.request(subject, body, { timeout: 60_000 }).then((m) => {
            const r = decode(m.data, HypercallReply);
            if (!r.ok) throw new Error(`disk.read: ${r.message}`);
            wall[k] = (performance.now() - intended) / TIME_SCALE;
            device[k] = r.waitMs + r.serviceMs;
          }),
        );
      }
      if (i >= arrivals.length) return done();
      setTimeout(tick, Math.max(0, t0 + arrivals[i]!.at * TIME_SCALE - performance.now()));
    };
    setTimeout(tick, 50);
  });
  await Promise.all(pending);
  return { wall, device, late };
}

/** Mean over all but the first 5% (the queue starts empty; the replay drops the same ones). */
const steady = (xs: number[]) => mean(xs.slice(Math.floor(xs.length * 0.05)));

/** Keeps OUTSTANDING CPU bursts of a VM in flight; sums the device time of replies inside the window. */
class CpuDriver {
  private stopped = false;
  private error: unknown;
  private window: { from: number; to: number } | undefined;
  servedMs = 0;
  private readonly loops: Promise<void>[];

  constructor(guest: NatsConnection, subject: string, cycles: number) {
    const body = encode({ op: 'cpu', cycles });
    const loop = async (): Promise<void> => {
      try {
        while (!this.stopped) {
          const r = decode((await guest.request(subject, body, { timeout: 60_000 })).data, HypercallReply);
          if (!r.ok) throw new Error(`cpu: ${r.message}`);
          const now = performance.now();
          if (this.window && now >= this.window.from && now < this.window.to) this.servedMs += r.serviceMs;
        }
      } catch (e) {
        this.error ??= e;
        this.stopped = true;
      }
    };
    this.loops = Array.from({ length: OUTSTANDING }, loop);
  }

  measure(from: number, to: number): void {
    this.window = { from, to };
    this.servedMs = 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    if (this.error) throw this.error;
  }
}

export async function fidelity(o: FidelityOptions): Promise<Record<string, unknown>> {
  const { log, quick } = o;
  const diskWallMs = quick ? 8_000 : 45_000;
  const warmMs = quick ? 1_000 : 3_000;
  const cpuWallMs = quick ? 5_000 : 20_000;

  const small = loadProfile('small');
  const benchDisk = {
    ...small.disks[0]!,
    id: 'sdx',
    model: 'bench: bandwidth-bound, no fixed latency',
    capacityGiB: 1,
    // Below the small disks' IOPS, so the hypervisor's swap area goes to one of those.
    iops: 50_000,
    bandwidthMBps: DISK_MBPS,
    latencyMs: 0,
  };
  const profile: HardwareProfile = {
    ...small,
    name: 'bench',
    description: `small, with a disk ${benchDisk.id} first: ${DISK_MBPS} MB/s, no fixed latency (service time = transfer time)`,
    disks: [benchDisk, ...small.disks],
  };
  fs.mkdirSync(o.home, { recursive: true });
  const profileFile = path.join(o.home, 'bench-profile.json');
  fs.writeFileSync(profileFile, JSON.stringify(profile, null, 2));

  const stack = await startStack({
    natsUrl: o.natsUrl,
    ns: o.ns,
    host: 'host1',
    home: o.home,
    timeScale: TIME_SCALE,
    profile: profileFile,
    scheduler: 'fair',
    hypervisorType: 'type1',
    overcommit: 1,
    detached: false,
    logLevel: 'warn',
  });
  const ns = namespace(o.ns);
  const conns: NatsConnection[] = [];
  const results: Record<string, unknown> = { timeScale: TIME_SCALE };
  try {
    const nc = await connect({ servers: o.natsUrl });
    conns.push(nc);
    const api = new ManagementClient(nc, ns, 'host1', 30_000);
    const cpuVms = ['f1', 'f2', 'f3'];
    await api.call('define', { name: 'mm1', os: 'bsd', memoryMiB: 256, diskGiB: 1 });
    for (const name of cpuVms)
      await api.call('define', { name, os: 'bsd', memoryMiB: 256, diskGiB: 0.125, vcpus: VCPUS });
    for (const name of ['mm1', ...cpuVms]) await api.call('start', { name });
    for (const name of ['mm1', ...cpuVms]) {
      await waitFor(async () => (await api.call('info', { name })).state === 'running', 120_000, `${name} running`);
    }
    const guestOf = async (name: string) => {
      const c = await connect({ servers: o.natsUrl, inboxPrefix: guestInboxPrefix(ns, name) });
      conns.push(c);
      return c;
    };

    // 1. Disk: M/G/1 (≈ M/M/1) at ρ = 0.5 and 0.8, one VM reading from its disk.
    const mm1 = await api.call('info', { name: 'mm1' });
    const extent = mm1.disks[0]!.extents[0]!;
    if (extent.disk !== benchDisk.id) throw new Error(`mm1's disk landed on ${extent.disk}, not ${benchDisk.id}`);
    const timing = new DiskTiming(benchDisk);
    const guest = await guestOf('mm1');
    const disk: Record<string, unknown>[] = [];
    for (const rho of RHOS) {
      const p = plan(`bench-mm1-${rho}`, rho, timing, mm1.disks[0]!.sizeBytes, diskWallMs);
      const live = await openLoop(guest, hypercallSubject(ns, 'mm1'), p.arrivals);
      const modelPk = p.es + (p.lambda * p.es2) / (2 * (1 - rho));
      const modelMm1 = p.es / (1 - rho);
      const row = {
        rho,
        arrivals: p.arrivals.length,
        meanServiceMs: p.es,
        serviceCv2: p.es2 / (p.es * p.es) - 1,
        modelMs: modelPk,
        mm1Ms: modelMm1,
        replayMs: steady(replay(p.arrivals, benchDisk)),
        deviceMs: steady(live.device),
        wallMs: steady(live.wall),
        // What the bus, timers and processes add to each request, in wall ms: divide by a
        // time scale to see what it would cost the figures there.
        addedWallMs: (steady(live.wall) - steady(live.device)) * TIME_SCALE,
        sendLateWallMs: steady(live.late),
      };
      disk.push(row);
    }
    results['disk'] = { profileDisk: benchDisk, meanBytes: MEAN_BYTES, rows: disk };

    // 2. CPU: three VMs of four vCPUs each keep eight bursts queued on four cores.
    const cycles = BURST_MS * small.cpu.mhz * 1000;
    const drivers = await Promise.all(
      cpuVms.map(async (name) => new CpuDriver(await guestOf(name), hypercallSubject(ns, name), cycles)),
    );
    const phase = async (): Promise<number[]> => {
      await sleep(warmMs);
      const from = performance.now();
      const to = from + cpuWallMs;
      for (const d of drivers) d.measure(from, to);
      await sleep(cpuWallMs + 200);
      // Cores used: device ms over the window's simulated ms.
      return drivers.map((d) => d.servedMs / (cpuWallMs / TIME_SCALE));
    };
    const equal = await phase();
    const weights = [100, 200, 400];
    for (const [i, name] of cpuVms.entries()) await api.call('tune', { name, shares: weights[i]! });
    const weighted = await phase();
    for (const name of cpuVms) await api.call('tune', { name, shares: 100 });
    await api.call('tune', { name: 'f1', cpuReservationPct: 150 });
    const reserved = await phase();
    await Promise.all(drivers.map((d) => d.stop()));

    const wTotal = weighted.reduce((a, b) => a + b, 0);
    const wantW = weights.map((w) => w / weights.reduce((a, b) => a + b, 0));
    const weightErr = Math.max(...weighted.map((c, i) => Math.abs(c / wTotal / wantW[i]! - 1)));
    const rTotal = reserved.reduce((a, b) => a + b, 0);
    const cpu = {
      burstMs: BURST_MS,
      outstandingPerVm: OUTSTANDING,
      vcpus: VCPUS,
      equal: { cores: equal, jain: jain(equal) },
      weighted: { shares: weights, cores: weighted, maxRelError: weightErr },
      reservation: {
        reservedPct: 150,
        cores: reserved,
        // A floor: 1.5 cores; the other two split what is left equally.
        reservedOverWant: reserved[0]! / 1.5,
        othersJain: jain(reserved.slice(1)),
        othersOverWant: reserved.slice(1).map((c) => c / ((rTotal - 1.5) / 2)),
      },
    };
    results['cpu'] = cpu;

    log('');
    log(
      `live vs model — own stack at time scale ${TIME_SCALE}; disk ${benchDisk.id}: ${DISK_MBPS} MB/s, no fixed latency, queue depth ${benchDisk.queueDepth}`,
    );
    log(
      `disk reads, Poisson arrivals, sizes exponential (mean ${MEAN_BYTES / 1024} KiB, capped at ${MAX_IO_BYTES / 1024} KiB)`,
    );
    log('mean response, simulated ms');
    log(
      '   ρ  arrivals  E[S]   CV²S  M/G/1   replay  device  wall    wall÷M/G/1  wall÷replay  device÷replay  added wall ms (send late)',
    );
    for (const r of disk as { [k: string]: number }[]) {
      log(
        `${f2(r['rho']!).padStart(4)}  ${String(r['arrivals']).padStart(8)}  ${f3(r['meanServiceMs']!)}  ${f2(r['serviceCv2']!).padStart(5)}  ` +
          `${f3(r['modelMs']!).padStart(6)}  ${f3(r['replayMs']!).padStart(6)}  ${f3(r['deviceMs']!).padStart(6)}  ${f3(r['wallMs']!).padStart(6)}  ` +
          `${f3(r['wallMs']! / r['modelMs']!).padStart(10)}  ${f3(r['wallMs']! / r['replayMs']!).padStart(11)}  ${f3(r['deviceMs']! / r['replayMs']!).padStart(13)}  ` +
          `${f2(r['addedWallMs']!).padStart(13)} (${f2(r['sendLateWallMs']!)})`,
      );
    }
    log('  (M/G/1: Pollaczek–Khinchine from the issued service times; replay: the same arrivals through the pure');
    log('   disk model; device: wait + service the reply reports; wall: measured from the intended send time;');
    log('   added: (wall − device) in wall ms, what the bus, timers and processes add to each request;');
    log("   send late: the part this process's own timers add, sending after the intended time)");
    log('');
    log(
      `CPU: 3 VMs × ${VCPUS} vCPUs, ${OUTSTANDING} bursts of ${BURST_MS} ms queued each, on ${small.cpu.coresPerSocket * small.cpu.sockets} cores (cores used)`,
    );
    log('                              f1     f2     f3   total   figure');
    const row = (label: string, c: number[], figure: string) =>
      log(
        `${label.padEnd(26)} ${c.map((x) => f2(x).padStart(6)).join(' ')}  ${f2(c.reduce((a, b) => a + b, 0)).padStart(6)}   ${figure}`,
      );
    row('equal shares', equal, `Jain ${cpu.equal.jain.toFixed(4)}`);
    row('shares 100:200:400', weighted, `max error vs 1:2:4 ${(weightErr * 100).toFixed(1)}%`);
    row(
      'f1 reserved 150%',
      reserved,
      `f1 ÷ 1.5 = ${f3(cpu.reservation.reservedOverWant)}; f2, f3 ÷ equal rest ${cpu.reservation.othersOverWant.map(f3).join(', ')}`,
    );
  } finally {
    for (const c of conns) await c.close();
    await stack.stop();
  }
  return results;
}
