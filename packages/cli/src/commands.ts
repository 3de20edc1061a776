import fs from 'node:fs';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import {
  ManagementClient,
  RealClock,
  RandomStreams,
  VmDefinition,
  anyVmEventSubject,
  decode,
  namespace,
  validate,
  VmEvent,
  type NatsConnection,
  type VmInfo,
} from '@vmsim/shared';
import { OpenLoop, createBusSender, type TargetSpec } from '@vmsim/client-gen';
import { isAlive, readContext, removeContext, requireContext, writeContext, type Context } from './context.ts';
import { fmtMs, table } from './format.ts';
import { stopPid } from './processes.ts';
import { startStack } from './stack.ts';
import { attachAuth } from './stack-auth.ts';

/** Bad command-line input: exit code 2, before anything starts. */
export class UsageError extends Error {}

export type Out = (line: string) => void;

export interface UpOptions {
  home: string;
  natsUrl: string | undefined;
  ns: string;
  host: string;
  profile: string;
  scheduler: 'fifo' | 'fair';
  hypervisorType: 'type1' | 'type2';
  timeScale: number;
  overcommit: number;
}

export async function up(o: UpOptions, out: Out): Promise<Context> {
  const existing = readContext(o.home);
  if (existing && (isAlive(existing.pids.hypervisor) || isAlive(existing.pids.hostAgent))) {
    throw new Error(`a stack is already up (hypervisor pid ${existing.pids.hypervisor}); run \`vmsim down\` first`);
  }
  out(
    `starting ${o.natsUrl ? `on ${o.natsUrl}` : 'nats-server'}, host-agent (${o.profile}) and hypervisor (${o.hypervisorType}, ${o.scheduler})…`,
  );
  const stack = await startStack({ ...o, detached: true });
  const ctx: Context = {
    version: 1,
    natsUrl: stack.natsUrl,
    ns: stack.ns,
    host: stack.host,
    home: o.home,
    startedAt: new Date().toISOString(),
    pids: stack.pids,
    logs: stack.logs,
    timeScale: o.timeScale,
    credsFile: stack.credsFile,
  };
  writeContext(o.home, ctx);
  const h = stack.hostInfo;
  out(
    `up: host ${h.host}, ${h.cpu.cores} cores @ ${h.cpu.mhz} MHz, ${h.memory.totalMiB} MiB RAM, hypervisor ${h.hypervisor}, scheduler ${h.scheduler}`,
  );
  out(`bus ${ctx.natsUrl} namespace ${ctx.ns}; logs in ${path.dirname(ctx.logs.hypervisor)}`);
  return ctx;
}

export async function down(home: string, out: Out): Promise<void> {
  const ctx = readContext(home);
  if (!ctx) {
    out('no stack is up');
    return;
  }
  // The hypervisor first: it powers off its guests before it exits.
  await stopPid(ctx.pids.hypervisor, 30_000);
  await stopPid(ctx.pids.hostAgent, 10_000);
  if (ctx.pids.nats !== null) await stopPid(ctx.pids.nats, 10_000);
  removeContext(home);
  out('down');
}

export async function withApi<T>(
  home: string,
  fn: (api: ManagementClient, nc: NatsConnection, ctx: Context) => Promise<T>,
): Promise<T> {
  const ctx = requireContext(home);
  let nc: NatsConnection;
  try {
    // Long-running commands (events, load) ride out a NATS restart: reconnect for ever.
    nc = await connect({
      servers: ctx.natsUrl,
      name: 'vmsim-cli',
      timeout: 3000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...attachAuth(ctx.credsFile),
    });
  } catch (e) {
    throw new Error(
      `cannot reach the bus at ${ctx.natsUrl} (${(e as Error).message}); is the stack up? (\`vmsim up\` or \`docker compose up\`)`,
      { cause: e },
    );
  }
  try {
    return await fn(new ManagementClient(nc, namespace(ctx.ns), ctx.host), nc, ctx);
  } finally {
    await nc.close();
  }
}

export function vmRow(v: VmInfo): (string | number)[] {
  const hc = v.hypercalls.total;
  return [
    v.name,
    v.state,
    v.definition.app,
    v.definition.os,
    v.definition.vcpus,
    // A running guest's memory in use of its size (and what of it is on swap).
    v.memory.usedMiB > 0
      ? `${v.memory.usedMiB}/${v.definition.memoryMiB}${v.memory.swappedMiB > 0 ? ` (${v.memory.swappedMiB} sw)` : ''}`
      : v.definition.memoryMiB,
    diskCell(v),
    v.definition.shares,
    v.pid ?? '-',
    hc,
    v.net.requests,
    fmtMs(Object.values(v.hypercalls.byOp).reduce((sum, f) => sum + f.waitMs, 0) + v.net.waitMs),
    v.reason.length > 60 ? `${v.reason.slice(0, 57)}…` : v.reason,
  ];
}
/** WAIT: simulated ms the VM's requests queued behind other VMs' (its ready or steal time). */
export const VM_HEADERS = [
  'NAME',
  'STATE',
  'APP',
  'OS',
  'VCPU',
  'MEM MiB',
  'DISK',
  'SHARES',
  'PID',
  'HYPERCALLS',
  'REQUESTS',
  'WAIT ms',
  'REASON',
];

/** Bytes as MiB below a GiB, GiB above: short enough for a table cell. */
function size(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)}G` : `${(bytes / 2 ** 20).toFixed(0)}M`;
}

/** Its virtual disk: allocated (own chunks) of virtual size, thin or thick, and a stall mark. */
function diskCell(v: VmInfo): string {
  const vol = v.disks[0]?.volume;
  if (!vol) return '-';
  const stalled = v.state === 'paused' && v.reason.startsWith('I/O error') ? ' FULL' : '';
  return `${size(vol.allocatedBytes)}/${size(vol.virtualBytes)} ${vol.provisioning}${stalled}`;
}

/** The disk's volume, allocation and I/O figures (simulated ms), for `vm info`. */
function diskLines(v: VmInfo): string[] {
  const d = v.disks[0];
  const vol = d?.volume;
  if (!d || !vol) return ['disk:        -'];
  const io = vol.io;
  const ops = io.reads + io.writes;
  const extents = d.extents.slice(0, 6).map((e) => `${e.disk}@${e.pOffset}+${e.length}`);
  const more = d.extents.length > extents.length ? `, … (${d.extents.length} extents)` : '';
  return [
    `disk:        volume ${vol.id} in pool ${vol.pool}, ${vol.provisioning}${vol.origin ? `, clone of ${vol.origin}` : ''}: ` +
      `${size(vol.allocatedBytes)} allocated + ${size(vol.sharedBytes)} shared of ${size(vol.virtualBytes)}; ` +
      `${vol.snapshots.length} snapshots${vol.snapshots.length > 0 ? ` (${vol.snapshots.map((x) => x.name).join(', ')})` : ''}`,
    `disk I/O:    ${io.reads} reads (${io.zeroReads} of unwritten chunks), ${io.writes} writes, ${io.flushes} flushes; ` +
      `latency mean ${fmtMs(ops > 0 ? io.latencyMsSum / ops : null)} ms, max ${fmtMs(io.latencyMsMax)} ms; ` +
      `copied up ${size(io.copiedBytes)}, zero-filled ${size(io.zeroedBytes)}; ${io.poolFullStalls} pool-full stalls`,
    `disk map:    ${extents.join(', ') || '(nothing written)'}${more}`,
  ];
}

/** Guest memory in use over its limit, with what is on swap when anything is. */
function memCell(v: VmInfo): string {
  const m = v.memory;
  return `${m.usedMiB}/${m.limitMiB}${m.swappedMiB > 0 ? ` (${m.swappedMiB} swapped)` : ''}`;
}

/** The guest's stressor figures (of the one running, or the last one), when it ran any. */
function stressCell(v: VmInfo): string {
  const a = v.app;
  if (a['stress.ops'] === undefined) return '';
  const mib = (a['stress.bytes'] ?? 0) / 2 ** 20;
  const procs = a['stress.processes'] ? `, ${a['stress.processes']} processes` : '';
  return ` (${v.stress ? 'running' : 'last run'}: ${a['stress.ops']} ops, ${mib.toFixed(0)} MiB, ${a['stress.errors'] ?? 0} errors, ${a['stress.refused'] ?? 0} refused${procs})`;
}

export function vmDetails(v: VmInfo): string {
  const lines = [
    `name:        ${v.name} (${v.uuid})`,
    `state:       ${v.state} — ${v.reason}`,
    `guest:       ${v.definition.os} + ${v.definition.app}, pid ${v.pid ?? '-'}, restarts ${v.restarts}, boot ${fmtMs(v.bootMs)} ms (simulated)`,
    ...(v.definition.ackBeforeFlush ? ['durability:  UNSAFE — the db acknowledges writes before flushing them'] : []),
    `resources:   ${v.definition.vcpus} vCPU, ${v.definition.memoryMiB} MiB, ${v.definition.diskGiB} GiB disk, shares ${v.definition.shares}`,
    ...diskLines(v),
    `heartbeat:   ${v.lastHeartbeatAgoMs === null ? '-' : `${v.lastHeartbeatAgoMs} ms ago`}, guest event-loop lag ${fmtMs(v.guestLagMs)} ms`,
    `network:     ${v.net.requests} requests, ${v.net.replies} replies, ${v.net.dropped} dropped, NIC wait ${fmtMs(v.net.waitMs)} ms`,
    `memory:      ${memCell(v)} MiB used/limit, ${v.memory.residentMiB} resident, ${v.memory.swappedMiB} swapped, ${v.memory.balloonMiB} ballooned, ${v.memory.majorFaults} major faults, ${v.memory.oomKills} OOM kills`,
    `stress:      ${v.stress ?? 'none'}${stressCell(v)}`,
    `fault:       ${v.fault ? `${v.fault.kind}${v.fault.target ? ` ${v.fault.target}` : ''}${v.fault.delayMs !== undefined ? ` +${v.fault.delayMs} ms` : ''} since ${new Date(v.fault.since).toISOString()}${v.fault.until !== null ? ` until ${new Date(v.fault.until).toISOString()}` : ''}` : 'none'}; health ${v.health}; ${v.badMessages} bad messages; watchdog ${v.definition.watchdog.action}${v.definition.watchdog.timeoutMs !== undefined ? ` after ${v.definition.watchdog.timeoutMs} ms` : ''}`,
    `hypercalls:  ${v.hypercalls.total} total, ${v.hypercalls.rejected} rejected`,
    table(
      ['  OP', 'COUNT', 'ERRORS', 'WAIT ms (sum)', 'BYTES'],
      Object.entries(v.hypercalls.byOp).map(([op, f]) => [`  ${op}`, f.count, f.errors, fmtMs(f.waitMs), f.bytes]),
    ),
  ];
  return lines.join('\n');
}

export function parseDefinition(input: Record<string, unknown>): VmDefinition {
  try {
    return validate(input, VmDefinition, 'VM definition');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Waits until the VM reaches one of `states`, printing nothing; throws on timeout. */
export async function waitForState(
  api: ManagementClient,
  name: string,
  states: string[],
  timeoutMs: number,
): Promise<VmInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await api.call('info', { name });
    if (states.includes(info.state)) return info;
    if (Date.now() > deadline) throw new Error(`VM ${name} is ${info.state} after ${timeoutMs} ms (${info.reason})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface LoadOptions {
  vms: string[];
  ratePerS: number;
  durationMs: number;
  arrival: 'poisson' | 'constant';
  postFraction: number;
  seed: string;
  timeoutMs: number;
}

/** Drives open-model load at VMs through the host's virtual switch and prints what came back. */
export async function load(home: string, o: LoadOptions, out: Out, json: boolean): Promise<unknown> {
  return withApi(home, async (api, nc, ctx) => {
    // The hypervisor knows the time scale the stack runs at.
    const clock = new RealClock((await api.call('ping', {})).timeScale);
    const targets: TargetSpec[] = o.vms.map((vm) => ({
      vm,
      ratePerS: o.ratePerS,
      arrival: o.arrival,
      mix: { GET: 1 - o.postFraction, POST: o.postFraction },
    }));
    const loop = new OpenLoop({
      clock,
      rng: new RandomStreams(o.seed).stream('cli-load'),
      targets,
      durationMs: o.durationMs,
      timeoutMs: o.timeoutMs,
      send: createBusSender(nc, namespace(ctx.ns), ctx.host, { timeoutMs: clock.toWall(o.timeoutMs) + 1000 }),
    });
    const progress = setInterval(() => {
      const p = loop.snapshot();
      if (!json)
        out(
          `  ${(p.elapsedMs / 1000).toFixed(1)}s/${(p.durationMs / 1000).toFixed(0)}s  ` +
            p.targets.map((t) => `${t.vm}: ${t.ok} ok ${t.errors} err p99 ${fmtMs(t.p99Ms)}ms`).join(' | '),
        );
    }, 2000);
    try {
      const s = await loop.run();
      if (json) out(JSON.stringify(s, null, 2));
      else {
        out(
          table(
            ['VM', 'SENT', 'OK', 'ERRORS', 'TIMEOUTS', 'OK/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
            s.targets.map((t) => [
              t.vm,
              t.sent,
              t.ok,
              t.errorCount,
              t.timeouts,
              t.okPerS.toFixed(1),
              fmtMs(t.latencyMs.p50),
              fmtMs(t.latencyMs.p90),
              fmtMs(t.latencyMs.p99),
              fmtMs(t.latencyMs.max),
            ]),
          ),
        );
        out("(latency in simulated ms, from each request's intended send time)");
      }
      return s;
    } finally {
      clearInterval(progress);
    }
  });
}

/** Follows VM events until interrupted. */
export async function events(home: string, out: Out, signal: AbortSignal): Promise<void> {
  await withApi(home, async (_api, nc, ctx) => {
    const sub = nc.subscribe(anyVmEventSubject(namespace(ctx.ns), ctx.host));
    signal.addEventListener('abort', () => sub.unsubscribe());
    for await (const m of sub) {
      try {
        const e = decode(m.data, VmEvent, 'VM event');
        // Stress and memory events change no state: they show their kind instead.
        const what =
          e.kind && e.kind !== 'state'
            ? `${e.kind.padEnd(9)}   ${String(e.kind === 'stress' ? (e.stress ?? '-') : e.fault ? `${e.fault.kind} ${e.fault.phase}` : (e.health ?? '')).padEnd(9)}`
            : `${String(e.from ?? '-').padEnd(9)} → ${String(e.to ?? '-').padEnd(9)}`;
        out(`${new Date(e.t).toISOString()}  ${e.vm.padEnd(12)} ${what} ${e.reason}`);
      } catch (err) {
        out(`(bad event: ${(err as Error).message})`);
      }
    }
  });
}

export function logsDir(home: string): string {
  const ctx = requireContext(home);
  const dir = path.dirname(ctx.logs.hypervisor);
  if (!fs.existsSync(dir)) throw new Error(`no logs at ${dir}`);
  return dir;
}
