#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { STRESS_KINDS, isVmsimError, type VmInfo } from '@vmsim/shared';
import {
  UsageError,
  VM_HEADERS,
  down,
  events,
  load,
  parseDefinition,
  up,
  vmDetails,
  vmRow,
  waitForState,
  withApi,
} from './commands.ts';
import { requireContext, vmsimHome } from './context.ts';
import { compareTypes, printComparison } from './compare-types.ts';
import { parseStresses, printIsolation, runIsolation } from './isolation.ts';
import { runScenarioPolicies } from './policies.ts';
import { runScenario } from './run.ts';
import { writeNatsAuth } from './stack-auth.ts';
import { ScenarioError, loadScenario } from './scenario.ts';
import { parseDuration, table } from './format.ts';
import { checkStackFlags, checkTimeScale, checkTune, fraction, positive, vmName } from './input.ts';
import { parseWatchdogFlags, runFaultCommand } from './faults.ts';
import { diskSpecText, parseStorageArgs, runStorage, vmDiskFlags } from './storage.ts';

const HELP = `vmsim — a simulated virtualized server host

Usage:
  vmsim up [--profile small|large] [--scheduler fair|fifo] [--hypervisor type1|type2]
           [--time-scale N] [--overcommit R] [--ns NS] [--host ID]
                         start nats-server (unless NATS_URL is set), host-agent and hypervisor
  vmsim down             stop the stack (guests are powered off first)
  vmsim nats-auth <dir> [--ns NS] [--host ID]
                         write a NATS server auth config and each service's creds into <dir>
                         (kept if already there), for a stack run elsewhere (docker compose)
  vmsim status           the host and its VMs
  vmsim vm define <name> [--app web] [--os linux|windows|bsd] [--vcpus N] [--memory MiB]
                         [--disk GiB] [--shares N] [--watchdog reset|poweroff|pause|none]
                         [--watchdog-timeout 3s]
                         [--pool P] [--thin] [--clone <template>] [--volume <disk>]
                         its virtual disk: a new volume in pool P (thick unless --thin), a
                         thin clone of a template, or an existing disk (default: thick, pool default)
                         [--ack-before-flush]  db only, UNSAFE teaching toggle: acknowledge
                         writes before flushing them (a power cut loses them; see README)
  vmsim vm start <name> [--no-wait]
  vmsim vm shutdown <name> [--timeout ms]     graceful (ACPI) shutdown
  vmsim vm destroy <name>                     forced power-off
  vmsim vm tune <name> [--shares N] [--cpu-cap PCT] [--cpu-reservation PCT] [--disk-bps N] [--disk-iops N]
                         [--net-bps N] [--net-pps N]      change shares and rate limits, also
                         while the VM runs ('none' lifts a limit; rates per simulated second)
                         [--mem-limit MiB] [--memory MiB]  memory limit (a guest past it is
                         OOM-killed) and size (hot-plug up, balloon down) of a running VM
                         [--watchdog reset|poweroff|pause|none] [--watchdog-timeout 3s]
                         what the watchdog does when heartbeats stop, and after how long
                         (wall time; default the hypervisor's VMSIM_WATCHDOG_MS, 10 s)
  vmsim vm pause|resume|undefine <name>
  vmsim vm list [--json]
  vmsim vm info <name> [--json]
  vmsim pool list [--json]                    storage pools: capacity, allocated, free, virtual
                         (sum of disk sizes), overcommit, backing-file bytes, stalled VMs
  vmsim pool create <id> --disk <physdisk> [--disk <physdisk>...] [--size GiB] [--chunk-mib N]
                         a pool of host disks no volume uses yet (taken from the default pool);
                         --size: only the first GiB of each disk (a partition)
  vmsim pool add-disk <id> <physdisk> [--size GiB]   grow a pool; VMs paused on a full pool resume
  vmsim disk list [--pool P] [--json]         virtual disks: size, allocated, shared, snapshots,
                         VM, template/origin, reads, writes, mean latency
  vmsim disk info <id> [--json]
  vmsim disk create <id> --size GiB [--pool P] [--thin|--thick]   (default thin, pool default)
  vmsim disk snapshot|revert <id> <snapshot>  take a snapshot / go back to it (the VM must be off)
  vmsim disk delete <id> [--snapshot <snapshot>]
                         delete a disk (not a template with clones), or one of its snapshots
  vmsim disk template <id>                    make it a read-only golden image
  vmsim disk clone <template> <new-id> [--count N]
                         thin clone(s), nothing copied; --count N makes <new-id>-1..N and
                         prints the time each took and the total
  vmsim load <vm>[,<vm>...] [--rate N/s] [--duration 10s] [--arrival poisson|constant]
                         [--post 0.1] [--seed S] [--timeout 5s] [--json]
                         open-model client load through the host's virtual switch
  vmsim stress <vm> cpu|memory|fork-bomb|disk|net-send|net-recv [--for 10s]
                         start one of the Isolation Benchmark Suite's stressors in a running
                         VM (replacing the one it runs), until stopped or for a simulated time
  vmsim stress <vm> stop stop it
  vmsim fault <vm> crash|kill|hang|pause|resume|slow|hog|leak|garbage|disconnect
              [--for 5s] [--delay 5ms] [--target cpu|disk|net]
                         inject a fault into a running VM: crash (the guest exits), kill
                         (SIGKILL), hang (event loop blocked), pause/resume (SIGSTOP/SIGCONT
                         behind the hypervisor's back), slow (+delay per hypercall, default 5ms),
                         hog (a cpu, disk or net stressor), leak (memory grows until the limit),
                         garbage (malformed messages on its subjects), disconnect (drops its bus
                         connection); --for clears it after a simulated time
  vmsim fault <vm> clear clear it now
  vmsim fault host-agent restart|power-cut    a stack of \`vmsim up\`: restart the host-agent
                         (power-cut: SIGKILL, unflushed writes in its disks' caches are lost)
  vmsim fault hypervisor restart [--graceful] SIGKILL it and start it again: its guests live on
                         and are re-adopted (--graceful: SIGTERM, guests powered off, rebooted)
  vmsim fault nats restart                    the stack's nats-server, same port and store
  vmsim events           follow VM state changes, stressors, faults, watchdog and health events
  vmsim compare-types [--guests 1,2,4,8,16] [--duration 2s] [--time-scale 40] [--report <dir>] [--json]
                         the same CPU-bound workload on a type-1 and a type-2 host, with more
                         and more guests: throughput and p99 for each
  vmsim isolation [--policy fifo|fair|both] [--runs 3] [--json <file>] [--stress cpu,disk,…]
                  [--duration 2s] [--warmup 300ms] [--time-scale 40]
                         the Isolation Benchmark Suite: three well-behaved web VMs and one
                         running each stressor in turn; percent degradation per policy
  vmsim run <scenario.yaml> [--duration 30s] [--time-scale N] [--report <dir>] [--attach]
                         run a scenario on a stack of its own; writes report.json and report.md,
                         exits 1 when an SLO fails and 2 when the scenario is invalid;
                         --attach runs it on the stack that is up (vmsim up, docker compose)

Durations and latencies are simulated time (wall = simulated × time scale).
The stack's context (bus URL, namespace) is kept in $VMSIM_HOME/context.json (default ~/.vmsim).
Exit codes: 0 ok, 1 failure, 2 bad input.`;

function num(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name}: "${v}" is not a number`);
  return n;
}

function oneOf<T extends string>(v: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v))
    throw new UsageError(`--${name}: "${v}" is not one of ${allowed.join(', ')}`);
  return v as T;
}

function duration(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  try {
    return parseDuration(v, `--${name}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const out = (line: string): void => void process.stdout.write(`${line}\n`);

export async function run(argv: string[]): Promise<number> {
  // `isolation --json <file>` takes a file where every other command's --json is a switch.
  let jsonFile: string | undefined;
  if (argv[0] === 'isolation') {
    const i = argv.indexOf('--json');
    if (i >= 0) {
      jsonFile = argv[i + 1];
      if (!jsonFile || jsonFile.startsWith('--')) throw new UsageError('--json needs a file name for isolation');
      argv = [...argv.slice(0, i), ...argv.slice(i + 2)];
    }
  }
  // Storage commands parse their own flags: `pool create` repeats --disk (GiB for vm define).
  if (argv[0] === 'pool' || argv[0] === 'disk') {
    const command = parseStorageArgs(argv);
    if (command.op === 'help') {
      out(HELP);
      return 0;
    }
    return runStorage(vmsimHome(), command, out);
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        profile: { type: 'string' },
        scheduler: { type: 'string' },
        hypervisor: { type: 'string' },
        'time-scale': { type: 'string' },
        overcommit: { type: 'string' },
        ns: { type: 'string' },
        host: { type: 'string' },
        app: { type: 'string' },
        os: { type: 'string' },
        vcpus: { type: 'string' },
        memory: { type: 'string' },
        disk: { type: 'string' },
        shares: { type: 'string' },
        'no-wait': { type: 'boolean' },
        'ack-before-flush': { type: 'boolean' },
        pool: { type: 'string' },
        thin: { type: 'boolean' },
        clone: { type: 'string' },
        volume: { type: 'string' },
        timeout: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        arrival: { type: 'string' },
        post: { type: 'string' },
        seed: { type: 'string' },
        report: { type: 'string' },
        'cpu-cap': { type: 'string' },
        'mem-limit': { type: 'string' },
        'cpu-reservation': { type: 'string' },
        'disk-bps': { type: 'string' },
        'disk-iops': { type: 'string' },
        'net-bps': { type: 'string' },
        'net-pps': { type: 'string' },
        attach: { type: 'boolean' },
        guests: { type: 'string' },
        for: { type: 'string' },
        policy: { type: 'string' },
        runs: { type: 'string' },
        stress: { type: 'string' },
        warmup: { type: 'string' },
        delay: { type: 'string' },
        target: { type: 'string' },
        watchdog: { type: 'string' },
        'watchdog-timeout': { type: 'string' },
        graceful: { type: 'boolean' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const {
    values: v,
    positionals: [cmd, sub, arg],
  } = parsed;
  const home = vmsimHome();
  if (v.help || !cmd) {
    out(HELP);
    return cmd || v.help ? 0 : 2;
  }
  switch (cmd) {
    case 'up':
      await up(
        checkStackFlags({
          home,
          natsUrl: process.env['NATS_URL'],
          ns: v.ns ?? 'vmsim',
          host: v.host ?? 'host1',
          profile: v.profile ?? 'small',
          scheduler: oneOf(v.scheduler, 'scheduler', ['fair', 'fifo'] as const, 'fair'),
          hypervisorType: oneOf(v.hypervisor, 'hypervisor', ['type1', 'type2'] as const, 'type1'),
          timeScale: num(v['time-scale'], 'time-scale', 10),
          overcommit: num(v.overcommit, 'overcommit', 1),
        }),
        out,
      );
      return 0;
    case 'down':
      await down(home, out);
      return 0;
    case 'nats-auth':
      if (!sub) throw new UsageError('nats-auth needs a directory');
      await writeNatsAuth(
        sub,
        { ns: v.ns ?? process.env['VMSIM_NS'] ?? 'vmsim', host: v.host ?? process.env['VMSIM_HOST'] ?? 'host1' },
        out,
      );
      return 0;
    case 'status':
      return withApi(home, async (api, _nc, ctx) => {
        const h = await api.call('ping', {});
        const { vms } = await api.call('list', {});
        if (v.json) out(JSON.stringify({ host: h, vms }, null, 2));
        else {
          out(
            `host ${h.host}: ${h.hypervisor}, scheduler ${h.scheduler}, ${h.cpu.cores} cores @ ${h.cpu.mhz} MHz, ` +
              `memory ${h.memory.committedMiB}/${h.memory.totalMiB} MiB committed (overcommit ${h.overcommit}), time scale ${h.timeScale}, profile ${h.hostAgent.profile}`,
          );
          out(`bus ${ctx.natsUrl} namespace ${ctx.ns}`);
          out(table(VM_HEADERS, vms.map(vmRow)));
        }
        return 0;
      });
    case 'events': {
      const ac = new AbortController();
      process.once('SIGINT', () => ac.abort());
      await events(home, out, ac.signal);
      return 0;
    }
    case 'load': {
      if (!sub) throw new UsageError('load needs the VM name(s), e.g. `vmsim load web1,web2`');
      const s = (await load(
        home,
        {
          vms: sub.split(',').filter(Boolean).map(vmName),
          ratePerS: positive(num(v.rate, 'rate', 20), 'rate'),
          durationMs: positive(duration(v.duration, 'duration', 10_000), 'duration'),
          arrival: oneOf(v.arrival, 'arrival', ['poisson', 'constant'] as const, 'poisson'),
          postFraction: fraction(num(v.post, 'post', 0.1), 'post'),
          seed: v.seed ?? '1',
          timeoutMs: positive(duration(v.timeout, 'timeout', 5_000), 'timeout'),
        },
        out,
        v.json ?? false,
      )) as { totals: { errors: number; timeouts: number } };
      return s.totals.errors + s.totals.timeouts > 0 ? 1 : 0;
    }
    case 'vm':
      return vmCommand(home, sub, arg, v);
    case 'stress': {
      if (!sub || !arg)
        throw new UsageError(
          `stress needs a VM and one of ${STRESS_KINDS.join(', ')} or stop, e.g. \`vmsim stress web1 cpu\``,
        );
      if (arg === 'stop') {
        if (v.for !== undefined) throw new UsageError('--for: only when starting a stressor');
        return withApi(home, async (api) => {
          const info = await api.call('unstress', { name: sub });
          out(`${sub}: no stressor runs (${info.state})`);
          return 0;
        });
      }
      vmName(sub);
      const kind = STRESS_KINDS.find((k) => k === arg);
      if (!kind) throw new UsageError(`stress: "${arg}" is not one of ${STRESS_KINDS.join(', ')}, stop`);
      const forMs = v.for === undefined ? undefined : duration(v.for, 'for', 0);
      if (forMs !== undefined && !(forMs > 0)) throw new UsageError('--for: must be longer than 0');
      return withApi(home, async (api) => {
        const info = await api.call('stress', {
          name: sub,
          kind,
          ...(forMs !== undefined ? { durationMs: forMs } : {}),
        });
        out(
          `${sub}: stressor ${info.stress} running${forMs !== undefined ? ` for ${forMs} simulated ms` : ' until `vmsim stress ' + sub + ' stop`'}`,
        );
        return 0;
      });
    }
    case 'fault':
      if (sub) vmName(sub);
      return runFaultCommand(
        home,
        sub,
        arg,
        { for: v.for, delay: v.delay, target: v.target, graceful: v.graceful },
        out,
      );
    case 'isolation': {
      const policy = oneOf(v.policy, 'policy', ['fifo', 'fair', 'both'] as const, 'both');
      const runs = num(v.runs, 'runs', 3);
      if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new UsageError('--runs: a whole number from 1 to 50');
      let stresses;
      try {
        stresses = parseStresses(v.stress);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
      const rows = await runIsolation({
        policies: policy === 'both' ? ['fifo', 'fair'] : [policy],
        stresses,
        runs,
        durationMs: duration(v.duration, 'duration', 2_000),
        warmupMs: duration(v.warmup, 'warmup', 300),
        // The disk stressor moves real bytes: at 20 two real cores already shaped the disk row.
        timeScale: checkTimeScale(num(v['time-scale'], 'time-scale', 40)),
        home: path.join(home, 'runs', `isolation-${stamp}`),
        natsUrl: process.env['NATS_URL'],
        seed: num(v.seed, 'seed', 1),
        out,
      });
      printIsolation(rows, out);
      if (jsonFile) {
        fs.mkdirSync(path.dirname(path.resolve(jsonFile)), { recursive: true });
        fs.writeFileSync(jsonFile, `${JSON.stringify(rows, null, 2)}\n`);
        out(`rows: ${jsonFile}`);
      }
      return 0;
    }
    case 'compare-types': {
      const guests = (v.guests ?? '1,2,4,8,16').split(',').map((g) => num(g, 'guests', 1));
      if (guests.some((g) => !Number.isInteger(g) || g < 1 || g > 32))
        throw new UsageError('--guests: whole numbers from 1 to 32');
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
      const dir = v.report ?? path.join('reports', `compare-types-${stamp}`);
      const rows = await compareTypes({
        guests,
        durationMs: duration(v.duration, 'duration', 2_000),
        // The round trip that hands a freed core its next burst takes ≈ 2 ms of wall time: at
        // time scale 20 that idled the cores ≈ 20% and hid much of what type 2 costs; at 40
        // they stay ≈ 90% busy, as a comparison on a saturated host needs.
        timeScale: checkTimeScale(num(v['time-scale'], 'time-scale', 40)),
        reportDir: dir,
        out: v.json ? () => undefined : out,
        home: path.join(home, 'runs', `compare-types-${stamp}`),
        natsUrl: process.env['NATS_URL'],
      });
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'compare-types.json'), `${JSON.stringify(rows, null, 2)}\n`);
      if (v.json) out(JSON.stringify(rows, null, 2));
      else {
        printComparison(rows, out);
        out(`results: ${path.join(dir, 'compare-types.json')} (and each run's report beside it)`);
      }
      return 0;
    }
    case 'run': {
      if (!sub) throw new UsageError('run needs a scenario file, e.g. `vmsim run scenarios/demo.yaml`');
      let scenario;
      try {
        scenario = loadScenario(sub);
      } catch (e) {
        if (e instanceof ScenarioError) throw new UsageError(e.message);
        throw e;
      }
      if (v.duration !== undefined)
        scenario = { ...scenario, duration: positive(duration(v.duration, 'duration', scenario.duration), 'duration') };
      if (v['time-scale'] !== undefined)
        scenario = { ...scenario, timeScale: checkTimeScale(num(v['time-scale'], 'time-scale', scenario.timeScale)) };
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
      const runOptions = {
        scenario,
        reportDir: v.report ?? path.join('reports', `${scenario.name}-${stamp}`),
        home: path.join(home, 'runs', `${scenario.name}-${stamp}`),
        natsUrl: process.env['NATS_URL'],
        attach: v.attach
          ? (({ natsUrl, ns, host, credsFile }) => ({ natsUrl, ns, host, credsFile }))(requireContext(home))
          : undefined,
        out,
      };
      if (scenario.host.scheduler === 'both') {
        if (v.attach) throw new UsageError('host.scheduler both starts a stack per policy: it cannot run --attach');
        return (await runScenarioPolicies(runOptions)).verdict === 'pass' ? 0 : 1;
      }
      const report = await runScenario(runOptions);
      return report.verdict === 'pass' ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command "${cmd}" (see vmsim --help)`);
  }
}

async function vmCommand(
  home: string,
  sub: string | undefined,
  name: string | undefined,
  v: Record<string, string | boolean | undefined>,
): Promise<number> {
  const str = (k: string) => v[k] as string | undefined;
  if (sub === 'list') {
    return withApi(home, async (api) => {
      const { vms } = await api.call('list', {});
      out(v['json'] ? JSON.stringify(vms, null, 2) : table(VM_HEADERS, vms.map(vmRow)));
      return 0;
    });
  }
  const ops = ['define', 'start', 'shutdown', 'destroy', 'pause', 'resume', 'undefine', 'info', 'tune'];
  /** Rate-limit flags: a number, or 'none' to lift the limit. */
  const limits = () => {
    const out: Record<string, number | null> = {};
    const flags = [
      ['cpu-cap', 'cpuCapPct'],
      ['mem-limit', 'memLimitMiB'],
      ['cpu-reservation', 'cpuReservationPct'],
      ['disk-bps', 'diskBytesPerS'],
      ['disk-iops', 'diskOpsPerS'],
      ['net-bps', 'netBytesPerS'],
      ['net-pps', 'netOpsPerS'],
    ] as const;
    for (const [flag, key] of flags) {
      const raw = str(flag);
      if (raw === undefined) continue;
      const n = raw === 'none' ? null : num(raw, flag, 0);
      if (n !== null && !(n > 0)) throw new UsageError(`--${flag}: must be > 0 or 'none'`);
      out[key] = n;
    }
    return out;
  };
  const watchdogOf = (current?: VmInfo['definition']['watchdog']) => {
    const w = parseWatchdogFlags(str('watchdog'), str('watchdog-timeout'), current);
    return w ? { watchdog: w } : {};
  };
  if (!sub || !ops.includes(sub)) throw new UsageError(`vm needs one of: ${[...ops, 'list'].join(', ')}`);
  if (!name) throw new UsageError(`vm ${sub} needs a VM name`);
  vmName(name);
  if (sub === 'tune') {
    checkTune({
      name,
      ...(str('shares') ? { shares: num(str('shares'), 'shares', 100) } : {}),
      ...(str('memory') ? { memoryMiB: num(str('memory'), 'memory', 1024) } : {}),
      ...limits(),
    });
  }
  if (sub === 'define') {
    const def = parseDefinition({
      name,
      ...(str('app') ? { app: str('app') } : {}),
      ...(str('os') ? { os: str('os') } : {}),
      ...(str('vcpus') ? { vcpus: num(str('vcpus'), 'vcpus', 1) } : {}),
      ...(str('memory') ? { memoryMiB: num(str('memory'), 'memory', 1024) } : {}),
      ...(str('disk') ? { diskGiB: num(str('disk'), 'disk', 4) } : {}),
      ...(str('shares') ? { shares: num(str('shares'), 'shares', 100) } : {}),
      ...limits(),
      ...watchdogOf(),
      ...(v['ack-before-flush'] ? { ackBeforeFlush: true } : {}),
      ...vmDiskFlags({
        pool: str('pool'),
        thin: v['thin'] as boolean | undefined,
        clone: str('clone'),
        volume: str('volume'),
      }),
    });
    if (def.ackBeforeFlush && def.app !== 'db') throw new UsageError('--ack-before-flush: only for --app db');
    return withApi(home, async (api) => {
      const info = await api.call('define', def);
      out(
        `defined ${info.name}: ${info.definition.os}/${info.definition.app}, ${info.definition.vcpus} vCPU, ${info.definition.memoryMiB} MiB, ${info.definition.diskGiB} GiB${diskSpecText(info.definition.disk)}` +
          (info.definition.ackBeforeFlush ? ' (UNSAFE: acknowledges writes before flushing them)' : ''),
      );
      return 0;
    });
  }
  return withApi(home, async (api) => {
    switch (sub) {
      case 'start': {
        let info = await api.call('start', { name });
        out(`${name}: ${info.state} (pid ${info.pid})`);
        if (!v['no-wait']) {
          info = await waitForState(api, name, ['running', 'crashed', 'failed', 'stopped'], 300_000);
          out(`${name}: ${info.state} — ${info.reason}`);
          return info.state === 'running' ? 0 : 1;
        }
        return 0;
      }
      case 'shutdown': {
        const t = str('timeout');
        const info = await api.call('shutdown', { name, ...(t ? { timeoutMs: duration(t, 'timeout', 15_000) } : {}) });
        out(`${name}: ${info.state}`);
        const done = await waitForState(api, name, ['stopped', 'crashed'], 120_000);
        out(`${name}: ${done.state} — ${done.reason}`);
        return 0;
      }
      case 'info': {
        const info = await api.call('info', { name });
        out(v['json'] ? JSON.stringify(info, null, 2) : vmDetails(info));
        return 0;
      }
      case 'tune': {
        // Only a new timeout: keep the action it has (and the other way round).
        const current =
          str('watchdog') === undefined || str('watchdog-timeout') === undefined
            ? str('watchdog') !== undefined || str('watchdog-timeout') !== undefined
              ? (await api.call('info', { name })).definition.watchdog
              : undefined
            : undefined;
        const info = await api.call('tune', {
          name,
          ...(str('shares') ? { shares: num(str('shares'), 'shares', 100) } : {}),
          ...(str('memory') ? { memoryMiB: num(str('memory'), 'memory', 1024) } : {}),
          ...limits(),
          ...watchdogOf(current),
        });
        const d = info.definition;
        out(
          `${name}: shares ${d.shares}, cpu cap ${d.cpuCapPct ?? 'none'}%, cpu reservation ${d.cpuReservationPct ? `${d.cpuReservationPct}%` : 'none'}, disk ${d.diskBytesPerS ?? '-'} B/s ${d.diskOpsPerS ?? '-'} IOPS, ` +
            `net ${d.netBytesPerS ?? '-'} B/s ${d.netOpsPerS ?? '-'} pkt/s, ` +
            `memory ${d.memoryMiB} MiB (limit ${d.memLimitMiB ?? 'none'}), ` +
            `watchdog ${d.watchdog.action} after ${d.watchdog.timeoutMs !== undefined ? `${d.watchdog.timeoutMs} ms` : 'the default'}; ${info.state}${info.state === 'running' ? '' : ` — ${info.reason}`}`,
        );
        return 0;
      }
      case 'undefine':
        await api.call('undefine', { name });
        out(`undefined ${name}`);
        return 0;
      default: {
        const info = await api.call(sub as 'destroy' | 'pause' | 'resume', { name });
        out(`${name}: ${info.state} — ${info.reason}`);
        return 0;
      }
    }
  });
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    const usage = e instanceof UsageError;
    const msg = isVmsimError(e) ? `${e.message} [${e.code}]` : (e as Error).message;
    process.stderr.write(`vmsim: ${msg}\n`);
    process.exit(usage ? 2 : 1);
  },
);
