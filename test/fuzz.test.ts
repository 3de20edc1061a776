import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  GuestControl,
  GuestStatus,
  Heartbeat,
  HostAgentStats,
  HostHello,
  HwCpuOp,
  HwDiskOp,
  HwDone,
  HwNicOp,
  Hypercall,
  HypercallReply,
  IngressReply,
  IngressRequest,
  Inventory,
  MAX_IO_BYTES,
  MGMT_OPS,
  MemAllocRequest,
  MemFreeRequest,
  MgmtRequests,
  VmEvent,
  VnicRx,
  VnicTx,
  EmptyRequest,
  call,
  createRng,
  decode,
  decodeRaw,
  encode,
  guestControlSubject,
  guestInboxPrefix,
  guestStatusSubject,
  hardwareSubjects,
  heartbeatSubject,
  hostWorkSubject,
  hypercallSubject,
  ingressSubject,
  isToken,
  mgmtSubject,
  namespace,
  serviceEventSubject,
  swapDoneSubject,
  vmEventSubject,
  vnicRxSubject,
  vnicTxSubject,
  waitFor,
  type HostInfo,
  type MgmtOp,
  type Namespace,
  type NatsConnection,
} from '@vmsim/shared';
import { LoadRunner, createBusSender } from '@vmsim/client-gen';
import { RandomStreams, RealClock } from '@vmsim/shared';
import { fuzzPayloads, FUZZ_KINDS, type FuzzFamily, type FuzzKind } from './helpers/fuzz.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;
const PER_FAMILY = 1000;
const HOST = 'host1';
const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));
/** The same seed sends the same payloads (the namespace aside); another explores further. */
const SEED = process.env['VMSIM_FUZZ_SEED'] ?? '1';

/** One subject the fuzzer sends to, and what the service there validates with. */
interface Target {
  subject: string;
  fam: FuzzFamily;
}

/**
 * A subject family and whether its service answers every message that comes with a reply
 * subject (`request`), or is fire-and-forget by design (`fire`): a publisher there never
 * waits for an answer, so a reply subject on it is ignored.
 */
interface Family {
  name: string;
  mode: 'request' | 'fire';
  targets: Target[];
}

interface Tally {
  sent: number;
  withReply: number;
  okReplies: number;
  errorReplies: number;
  /** Error replies by code. */
  codes: Record<string, number>;
  /** Request-reply families: requests that got no answer (timeout, no responders, unreadable). */
  unanswered: number;
  /** Replies that were neither a result nor an error with a known code. */
  malformed: number;
  /** Invalid payloads answered `ok: true`. */
  acceptedInvalid: number;
  byKind: Partial<Record<FuzzKind, number>>;
}

function families(ns: Namespace, disks: string[], nicId: string, inboxes: string[]): Family[] {
  const fam = (
    schema: FuzzFamily['schema'],
    templates: Record<string, unknown>[],
    extra: Partial<FuzzFamily> = {},
  ) => ({
    schema,
    templates,
    ...extra,
  });
  // The running VMs, one nobody defined, and tokens no VM name can be (unicode, 3,000 characters):
  // the builders refuse those, so their subjects are written out.
  const vms = ['web', 'db', 'ghost', 'ü-名前', 'x'.repeat(3000)];
  const readOnly = new Set<MgmtOp>(['ping', 'list', 'info', 'poolList', 'diskList', 'diskInfo', 'diskRead']);
  const mgmtTemplate = (op: MgmtOp): Record<string, unknown> => {
    switch (op) {
      case 'ping':
      case 'list':
        return {};
      case 'define':
        return { name: 'fz', memoryMiB: 256, diskGiB: 0.25, app: 'web', os: 'bsd' };
      case 'tune':
        return { name: 'web', shares: 100, cpuCapPct: 50 };
      case 'stress':
        return { name: 'web', kind: 'cpu', durationMs: 100 };
      case 'shutdown':
        return { name: 'web', timeoutMs: 1000 };
      case 'policy':
        return { policy: 'fair' };
      case 'poolList':
      case 'diskList':
        return {};
      case 'poolCreate':
        return { id: 'fzp', disks: ['sdb'], diskGiB: 0.01, chunkMiB: 1 };
      case 'poolAddDisk':
        return { id: 'fzp', disk: 'sdb', sizeGiB: 0.01 };
      case 'diskCreate':
        return { id: 'fzv', pool: 'default', sizeGiB: 0.01, provisioning: 'thin' };
      case 'diskSnapshot':
      case 'diskRevert':
      case 'diskDeleteSnapshot':
        return { id: 'fzv', snapshot: 's1' };
      case 'diskClone':
        return { template: 'fzv', id: 'fzc' };
      case 'diskInfo':
      case 'diskTemplate':
      case 'diskDelete':
        return { id: 'fzv' };
      case 'diskRead':
        return { id: 'web', offset: 0, length: 4096 };
      case 'diskWrite':
        return { id: 'fzv', offset: 0, data: new Uint8Array(8), flush: false };
      default:
        return { name: 'web' };
    }
  };
  const hw = { t: 7, vm: 'web', replyTo: 'fz.reply', waitMs: 0 };
  const reply = { ok: true, waitMs: 0, serviceMs: 1 };
  const ingress = [
    { app: 'web', op: 'GET', path: '/', bytes: 100 },
    { app: 'db', op: 'PUT', key: 'k', value: new Uint8Array(8), bytes: 100 },
    { app: 'mail', op: 'SUBMIT', mailbox: 'm', bytes: 100, body: new Uint8Array(8) },
    { app: 'file', op: 'UPLOAD', name: 'f', size: 10, seed: 1, bytes: 100 },
    { app: 'game', op: 'JOIN', player: 'p', seq: 0, bytes: 10 },
  ];
  return [
    {
      name: 'mgmt',
      mode: 'request',
      targets: MGMT_OPS.map((op) => ({
        subject: mgmtSubject(ns, HOST, op),
        fam: fam(MgmtRequests[op], [mgmtTemplate(op)], { readOnly: readOnly.has(op) }),
      })),
    },
    {
      name: 'hypercall',
      mode: 'request',
      targets: vms.map((vm) => ({
        subject: isToken(vm) ? hypercallSubject(ns, vm) : `${ns}.vm.${vm}.hc`,
        fam: fam(
          Hypercall,
          [
            { op: 'cpu', cycles: 1000 },
            { op: 'disk.read', disk: 0, offset: 0, length: 4096 },
            { op: 'disk.write', disk: 0, offset: 4096, data: new Uint8Array(16) },
            { op: 'disk.flush', disk: 0 },
            { op: 'mem.alloc', mib: 1 },
            { op: 'mem.free', mib: 1 },
            { op: 'net.send', bytes: 100 },
            { op: 'net.recv', bytes: 100 },
          ],
          { fieldLimitBytes: MAX_IO_BYTES },
        ),
      })),
    },
    {
      name: 'ingress',
      mode: 'request',
      targets: vms.map((vm) => ({
        subject: isToken(vm) ? ingressSubject(ns, HOST, vm) : `${ns}.net.${HOST}.vm.${vm}`,
        fam: fam(IngressRequest, ingress, { fieldLimitBytes: 256 * 1024 }),
      })),
    },
    {
      name: 'hw.query',
      mode: 'request',
      targets: [
        { subject: hardwareSubjects.inventory(ns, HOST), fam: fam(EmptyRequest, [{}], { readOnly: true }) },
        { subject: hardwareSubjects.utilization(ns, HOST), fam: fam(EmptyRequest, [{}], { readOnly: true }) },
        { subject: hardwareSubjects.stats(ns, HOST), fam: fam(EmptyRequest, [{}], { readOnly: true }) },
        { subject: hardwareSubjects.memAlloc(ns, HOST), fam: fam(MemAllocRequest, [{ owner: 'fz', mib: 1 }]) },
        { subject: hardwareSubjects.memFree(ns, HOST), fam: fam(MemFreeRequest, [{ owner: 'fz' }]) },
      ],
    },
    {
      name: 'hw.cpu',
      mode: 'request',
      targets: [{ subject: hardwareSubjects.cpu(ns, HOST), fam: fam(HwCpuOp, [{ ...hw, cycles: 1000 }]) }],
    },
    {
      name: 'hw.disk',
      mode: 'request',
      targets: [...disks, 'nodisk'].map((d) => ({
        subject: hardwareSubjects.disk(ns, HOST, d),
        fam: fam(
          HwDiskOp,
          [
            { ...hw, op: 'read', offset: 0, length: 4096 },
            { ...hw, op: 'write', offset: 0, data: new Uint8Array(16) },
            { ...hw, op: 'flush' },
            { ...hw, op: 'swap', dir: 'in', length: 4096 },
          ],
          { fieldLimitBytes: MAX_IO_BYTES },
        ),
      })),
    },
    {
      name: 'hw.nic',
      mode: 'request',
      targets: [`${nicId}.rx`, `${nicId}.tx`, 'nonic.rx', `${nicId}.up`].map((d) => ({
        subject: `${ns}.hw.${HOST}.nic.${d}`,
        fam: fam(HwNicOp, [{ ...hw, bytes: 100, frame: new Uint8Array(10) }], { fieldLimitBytes: 64 * 1024 }),
      })),
    },
    {
      name: 'hw.done',
      mode: 'fire',
      targets: [
        {
          subject: hardwareSubjects.done(ns, HOST),
          fam: fam(HwDone, [{ done: [{ t: 7, device: 'cpu', ok: true, serviceMs: 1 }] }]),
        },
      ],
    },
    {
      name: 'hw.hello',
      mode: 'fire',
      targets: [{ subject: hardwareSubjects.hello(ns, HOST), fam: fam(HostHello, [{ host: HOST, bootId: 'b' }]) }],
    },
    {
      name: 'heartbeat',
      mode: 'fire',
      targets: vms.map((vm) => ({
        subject: isToken(vm) ? heartbeatSubject(ns, vm) : `${ns}.vm.${vm}.hb`,
        fam: fam(Heartbeat, [{ seq: 1, pid: 1, uptimeMs: 1, lagMs: 0, served: 0, inFlight: 0, app: { x: 1 } }]),
      })),
    },
    {
      name: 'guest-status',
      mode: 'fire',
      targets: vms.map((vm) => ({
        subject: isToken(vm) ? guestStatusSubject(ns, vm) : `${ns}.vm.${vm}.status`,
        fam: fam(GuestStatus, [{ phase: 'booting', stage: 's', progress: 0.5, reason: 'r', pid: 1 }]),
      })),
    },
    {
      name: 'guest-control',
      mode: 'fire',
      targets: ['web', 'db'].map((vm) => ({
        subject: guestControlSubject(ns, vm),
        fam: fam(GuestControl, [
          { cmd: 'shutdown', reason: 'fz' },
          { cmd: 'stress', kind: 'cpu', durationMs: 10 },
          { cmd: 'stress-stop' },
        ]),
      })),
    },
    {
      name: 'vnic-rx',
      mode: 'fire',
      targets: ['web', 'db'].map((vm) => ({
        subject: vnicRxSubject(ns, vm),
        fam: fam(
          VnicRx,
          ingress.map((req) => ({ cid: 1, req })),
          { fieldLimitBytes: 256 * 1024 },
        ),
      })),
    },
    {
      name: 'vnic-tx',
      mode: 'fire',
      targets: vms.map((vm) => ({
        subject: isToken(vm) ? vnicTxSubject(ns, vm) : `${ns}.vm.${vm}.nic.tx`,
        fam: fam(VnicTx, [{ cid: 1, res: { ok: true, status: 200, bytes: 10 } }]),
      })),
    },
    {
      name: 'guest-inbox',
      mode: 'fire',
      // The guests' own request inboxes (nats.js muxes every hypercall there), under tokens no call has.
      targets: inboxes.map((inbox) => ({ subject: `${inbox}.fz1`, fam: fam(HypercallReply, [reply]) })),
    },
    {
      name: 'swap-done',
      mode: 'fire',
      targets: [1, 2, 1_000_000].map((id) => ({
        subject: swapDoneSubject(ns, HOST, id),
        fam: fam(HypercallReply, [reply]),
      })),
    },
    {
      name: 'host-work',
      mode: 'fire',
      targets: [{ subject: hostWorkSubject(ns, HOST), fam: fam(HypercallReply, [reply]) }],
    },
    {
      name: 'events',
      mode: 'fire',
      targets: [vmEventSubject(ns, HOST, 'web'), serviceEventSubject(ns, HOST, 'hypervisor')].map((subject) => ({
        subject,
        fam: fam(VmEvent, [{ t: 1, host: HOST, vm: 'web', from: null, to: 'defined', reason: 'r', pid: null }]),
      })),
    },
  ];
}

/** Sends one family's payloads, half of them as requests, `concurrency` requests at a time. */
async function barrage(nc: NatsConnection, f: Family, maxPayload: number): Promise<Tally> {
  const tally: Tally = {
    sent: 0,
    withReply: 0,
    okReplies: 0,
    errorReplies: 0,
    codes: {},
    unanswered: 0,
    malformed: 0,
    acceptedInvalid: 0,
    byKind: {},
  };
  const per = Math.ceil(PER_FAMILY / f.targets.length);
  const jobs: {
    subject: string;
    bytes: Uint8Array;
    valid: boolean;
    readOnly: boolean;
    kind: FuzzKind;
    request: boolean;
  }[] = [];
  for (const [i, t] of f.targets.entries()) {
    const rng = createRng(`fuzz/${SEED}/${f.name}/${i}`);
    for (const p of fuzzPayloads(rng, t.fam, per, { maxPayload })) {
      jobs.push({ subject: t.subject, ...p, readOnly: t.fam.readOnly ?? false, request: rng.next() < 0.5 });
    }
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const j = jobs[next++]!;
      tally.sent++;
      tally.byKind[j.kind] = (tally.byKind[j.kind] ?? 0) + 1;
      if (!j.request) {
        nc.publish(j.subject, j.bytes);
        // Big payloads one at a time, so no service falls behind as a slow consumer.
        if (j.bytes.length > 64 * 1024) await nc.flush();
        continue;
      }
      tally.withReply++;
      if (f.mode === 'fire') {
        // Nobody answers here by design: publish with a reply subject and do not wait.
        nc.publish(j.subject, j.bytes, { reply: '_INBOX.fz.ignored' });
        if (j.bytes.length > 64 * 1024) await nc.flush();
        continue;
      }
      let raw: { ok?: unknown; code?: unknown } | undefined;
      try {
        const m = await nc.request(j.subject, j.bytes, { timeout: 15_000 });
        raw = decodeRaw(m.data) as typeof raw;
      } catch {
        tally.unanswered++;
        continue;
      }
      if (raw?.ok === true) {
        tally.okReplies++;
        // A query may take what this process could not decode (deep nesting: stacks differ): only harm counts.
        if (!j.valid && !j.readOnly) tally.acceptedInvalid++;
      } else if (raw?.ok === false && typeof raw.code === 'string' && KNOWN_CODES.has(raw.code)) {
        tally.errorReplies++;
        tally.codes[raw.code] = (tally.codes[raw.code] ?? 0) + 1;
      } else tally.malformed++;
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  await nc.flush();
  return tally;
}

/**
 * Bad input everywhere: at least 1,000 random, truncated, oversized and schema-invalid
 * payloads on every subject family of a running stack (host-agent, hypervisor, two guests).
 */
describe('fuzzing every subject family', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let ns: Namespace;
  const tallies = new Map<string, Tally>();
  const logOffsets = new Map<string, number>();
  const pids: Record<string, number | null> = {};
  /** Each guest's hypercall inbox (its mux subscription's prefix), seen on one real request. */
  const inboxes: string[] = [];

  const hostInfo = (): Promise<HostInfo> => t.api.call('ping', {});
  const agentStats = () => call(nc, hardwareSubjects.stats(ns, HOST), {}, HostAgentStats, 5000);

  /** True when no service holds anything for a request: hypervisor, host-agent and both guests. */
  async function idle(): Promise<boolean> {
    const p = (await hostInfo()).pending!;
    if (p.connections + p.deviceQueued + p.deviceInFlight + p.memChains + (p.diskIo ?? 0) > 0) return false;
    const s = await agentStats();
    if (s.pendingDone + s.flushing + Object.values(s.inFlight).reduce((a, b) => a + b, 0) > 0) return false;
    for (const vm of ['web', 'db']) {
      const g = (await t.api.call('info', { name: vm })).guestPending;
      if (!g || g.hypercalls + g.requests > 0) return false;
    }
    return true;
  }

  beforeAll(async () => {
    t = await startTestStack({ timeScale: TIME_SCALE, env: { VMSIM_HEARTBEAT_MS: '250' } });
    nc = t.nc;
    ns = namespace(t.ns);
    await t.api.call('define', { name: 'web', app: 'web', os: 'bsd', memoryMiB: 512, diskGiB: 0.25 });
    await t.api.call('define', { name: 'db', app: 'db', os: 'bsd', memoryMiB: 512, diskGiB: 0.25 });
    await t.api.call('start', { name: 'web' });
    await t.api.call('start', { name: 'db' });
    for (const vm of ['web', 'db']) {
      await waitFor(async () => (await t.api.call('info', { name: vm })).state === 'running', 60_000, `${vm} running`);
      pids[vm] = (await t.api.call('info', { name: vm })).pid;
    }
    for (const [vm, req] of [
      ['web', { app: 'web', op: 'GET', path: '/', bytes: 100 }],
      ['db', { app: 'db', op: 'GET', key: 'none', bytes: 100 }],
    ] as const) {
      let seen: string | undefined;
      const sub = nc.subscribe(`${guestInboxPrefix(ns, vm)}.>`, {
        callback: (_e, m) => {
          seen ??= m.subject.slice(0, m.subject.lastIndexOf('.'));
        },
      });
      await nc.flush();
      await nc.request(ingressSubject(ns, HOST, vm), encode(req), { timeout: 30_000 });
      await waitFor(() => seen !== undefined, 5_000, `a hypercall reply to ${vm}`);
      sub.unsubscribe();
      inboxes.push(seen!);
    }
  });

  afterAll(async () => {
    await t?.stop();
  });

  it('a baseline: every service reports nothing pending before the barrage', async () => {
    await waitFor(idle, 15_000, 'an idle stack before the barrage');
    // (The host side's periodic CPU burst may be on a core at any one moment: idle() saw all zero once.)
    const p = (await hostInfo()).pending!;
    expect(Object.keys(p).sort()).toEqual(['connections', 'deviceInFlight', 'deviceQueued', 'diskIo', 'memChains']);
  });

  it('sends at least 1,000 bad payloads to every family; request-reply families answer each with an error code', async () => {
    const inv = await call(nc, hardwareSubjects.inventory(ns, HOST), {}, Inventory, 5000);
    const maxPayload = nc.info!.max_payload;
    for (const [name, file] of Object.entries(t.stack.logs)) if (file) logOffsets.set(name, fs.statSync(file).size);
    // The bus itself refuses what is above its limit: it never reaches a service.
    expect(() => nc.publish(mgmtSubject(ns, HOST, 'ping'), new Uint8Array(maxPayload + 1))).toThrow(/max_payload/);
    const fams = families(
      ns,
      inv.profile.disks.map((d) => d.id),
      inv.profile.nics[0]!.id,
      inboxes,
    );
    // Real clients keep using both VMs through the whole barrage.
    const load = new LoadRunner({
      clock: new RealClock(TIME_SCALE),
      streams: new RandomStreams('fuzz-load'),
      targets: [
        { vm: 'web', app: 'web', model: 'closed', users: 2, thinkMs: 20 },
        { vm: 'db', app: 'db', model: 'closed', users: 2, thinkMs: 20 },
      ],
      durationMs: 3_600_000,
      timeoutMs: 30_000,
      send: createBusSender(nc, ns, HOST, { timeoutMs: 70_000 }),
    });
    const loaded = load.run();
    for (const f of fams) {
      const tally = await barrage(nc, f, maxPayload);
      tallies.set(f.name, tally);
      expect(tally.sent, f.name).toBeGreaterThanOrEqual(PER_FAMILY);
      for (const k of FUZZ_KINDS) expect(tally.byKind[k] ?? 0, `${f.name} ${k}`).toBeGreaterThan(0);
      if (f.mode === 'request') {
        // No silent drop: every request with a reply subject got an answer, and every bad one an error code.
        expect(tally.unanswered, `${f.name}: requests without an answer`).toBe(0);
        expect(tally.malformed, `${f.name}: answers without a known error code`).toBe(0);
        expect(tally.acceptedInvalid, `${f.name}: invalid payloads accepted`).toBe(0);
        expect(tally.okReplies + tally.errorReplies).toBe(tally.withReply);
        expect(tally.errorReplies).toBeGreaterThan(0);
      }
    }
    const summary = Object.fromEntries(
      [...tallies].map(([k, v]) => [
        k,
        { sent: v.sent, withReply: v.withReply, errors: v.errorReplies, ok: v.okReplies, codes: v.codes },
      ]),
    );
    load.stop();
    const s = await loaded;
    const clients = s.targets.map((x) => ({ vm: x.vm, ok: x.ok, errors: x.errors, timeouts: x.timeouts }));
    console.log(`fuzz: ${JSON.stringify(summary)}\nclients during the barrage: ${JSON.stringify(clients)}`);
    // Bad input to the services did not cost the VMs' real clients a single request.
    for (const x of s.targets) {
      expect(x.ok, x.vm).toBeGreaterThan(0);
      expect(x.errorCount + x.timeouts, `${x.vm}: ${JSON.stringify(x.errors)}`).toBe(0);
    }
  });

  it('afterwards every service still serves, no process died, and nothing is left pending', async () => {
    // Processes: the host-agent and hypervisor never exited; the guests are the same processes.
    expect(t.stack.procs.hostAgent.exitCode).toBeNull();
    expect(t.stack.procs.hypervisor.exitCode).toBeNull();
    for (const vm of ['web', 'db']) {
      const info = await t.api.call('info', { name: vm });
      expect(info.state, vm).toBe('running');
      expect(info.pid, vm).toBe(pids[vm]);
      expect(info.restarts, vm).toBe(0);
    }
    // A valid management request, a host-agent query, and client requests that need hypercalls.
    expect((await t.api.call('list', {})).vms.map((v) => v.name).sort()).toEqual(['db', 'web']);
    expect((await call(nc, hardwareSubjects.inventory(ns, HOST), {}, Inventory, 5000)).host).toBe(HOST);
    const web = decode(
      (
        await nc.request(ingressSubject(ns, HOST, 'web'), encode({ app: 'web', op: 'GET', path: '/', bytes: 200 }), {
          timeout: 30_000,
        })
      ).data,
      IngressReply,
    );
    expect(web).toMatchObject({ ok: true, status: 200 });
    const value = new TextEncoder().encode('after the storm');
    const put = decode(
      (
        await nc.request(
          ingressSubject(ns, HOST, 'db'),
          encode({ app: 'db', op: 'PUT', key: 'fz', value, bytes: 100 }),
          { timeout: 30_000 },
        )
      ).data,
      IngressReply,
    );
    expect(put).toMatchObject({ ok: true });
    const get = decode(
      (
        await nc.request(ingressSubject(ns, HOST, 'db'), encode({ app: 'db', op: 'GET', key: 'fz', bytes: 100 }), {
          timeout: 30_000,
        })
      ).data,
      IngressReply,
    );
    expect(get.ok && get.data ? new TextDecoder().decode(get.data) : get).toBe('after the storm');
    // Every pending table back to empty: hypervisor, host-agent, both guests.
    await waitFor(idle, 30_000, 'every service back to nothing pending');
    // No service logged an uncaught exception or an error-level line while it was fuzzed.
    for (const [name, file] of Object.entries(t.stack.logs)) {
      if (!file || name === 'nats') continue;
      const text = fs
        .readFileSync(file)
        .subarray(logOffsets.get(name) ?? 0)
        .toString('utf8');
      const bad = text
        .split('\n')
        .filter((l) => /"level":(50|60)|uncaught|Unhandled|^\s+at /i.test(l))
        .slice(0, 5);
      expect(bad, `${name} log`).toEqual([]);
      // The logs were read where the services write them: each logged its refusals (warn level).
      expect(text, `${name} log`).toMatch(name === 'hostAgent' ? /operation refused/ : /bad heartbeat|bad frame/);
    }
  });

  it("a guest's garbage answer ends its client's connection at once, with an error code", async () => {
    // Answer in the guest's place (as a broken guest would) as soon as the request reaches its vNIC.
    const sub = nc.subscribe(vnicRxSubject(ns, 'web'), {
      max: 1,
      callback: (_e, m) => {
        const { cid } = decode(m.data, VnicRx);
        nc.publish(vnicTxSubject(ns, 'web'), encode({ cid, res: { ok: true, status: 200, bytes: 2 ** 52 } }));
      },
    });
    await nc.flush();
    const t0 = Date.now();
    const reply = decode(
      (
        await nc.request(ingressSubject(ns, HOST, 'web'), encode({ app: 'web', op: 'GET', path: '/', bytes: 100 }), {
          timeout: 20_000,
        })
      ).data,
      IngressReply,
    );
    sub.unsubscribe();
    expect(reply).toMatchObject({ ok: false, code: ErrorCode.SCHEMA, message: expect.stringMatching(/bad frame/) });
    // Long before the switch's connection timeout (30 s): nothing was left open for it.
    expect(Date.now() - t0).toBeLessThan(10_000);
    await waitFor(idle, 30_000, 'nothing pending after the bad answer');
  });
});

describe('the fuzz generator', () => {
  it('is seeded, covers every kind, and makes only payloads the schema refuses', () => {
    const fam = { schema: Hypercall, templates: [{ op: 'disk.read', disk: 0, offset: 0, length: 4096 }] };
    const a = fuzzPayloads(createRng('same'), fam, 240, { maxPayload: 1024 * 1024 });
    const b = fuzzPayloads(createRng('same'), fam, 240, { maxPayload: 1024 * 1024 });
    expect(a.map((p) => Buffer.from(p.bytes).toString('base64'))).toEqual(
      b.map((p) => Buffer.from(p.bytes).toString('base64')),
    );
    expect(new Set(a.map((p) => p.kind))).toEqual(new Set(FUZZ_KINDS));
    for (const p of a) {
      expect(p.valid).toBe(false);
      expect(p.bytes.length).toBeLessThanOrEqual(1024 * 1024);
    }
  });
});

const CLIENT_GEN = fileURLToPath(import.meta.resolve('@vmsim/client-gen/main'));

/** The load generator reads replies from the bus: garbage ones are counted by code, never a crash. */
describe('fuzzing the load generator with bad replies', () => {
  it('counts 1,000 bad replies as errors with codes and exits cleanly', async () => {
    const { startTestNats, connectTo, testNamespace, serviceCreds, tempHome } = await import('./helpers/nats.ts');
    const nats = await startTestNats();
    const nc = await connectTo(nats);
    const ns = namespace(testNamespace());
    try {
      const maxPayload = nc.info!.max_payload;
      const replies = fuzzPayloads(
        createRng('fuzz/client-gen'),
        {
          schema: IngressReply,
          templates: [{ ok: true, status: 200, bytes: 10, meta: { a: 1 } }],
          fieldLimitBytes: 256 * 1024,
        },
        1200,
        { maxPayload },
      );
      let answered = 0;
      // A fake VM on a host nobody else serves, whose every answer is bad.
      nc.subscribe(ingressSubject(ns, 'fuzzhost', 'junk'), {
        callback: (_e, m) => {
          const p = replies[answered++ % replies.length]!;
          m.respond(p.bytes);
        },
      });
      await nc.flush();
      const proc = spawn(process.execPath, [CLIENT_GEN], {
        env: {
          PATH: process.env['PATH'] ?? '',
          NATS_URL: nats.url,
          NATS_CREDS: (await serviceCreds(nats, tempHome(), { ns, host: 'fuzzhost' }))['client-gen'],
          VMSIM_NS: ns,
          VMSIM_HOST: 'fuzzhost',
          VMSIM_TIME_SCALE: '1',
          VMSIM_LOAD: JSON.stringify([{ vm: 'junk', app: 'web', ratePerS: 1000, arrival: 'constant' }]),
          VMSIM_DURATION_MS: '1300',
          VMSIM_REQUEST_TIMEOUT_MS: '5000',
          LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((r) => proc.once('exit', r));
      expect(code, out.slice(-2000)).toBe(0);
      const line = out.split('\n').find((l) => l.includes('"msg":"summary"'));
      expect(line, out.slice(-2000)).toBeDefined();
      const target = (
        JSON.parse(line!) as {
          summary: {
            targets: {
              sent: number;
              ok: number;
              errorCount: number;
              timeouts: number;
              errors: Record<string, number>;
            }[];
          };
        }
      ).summary.targets[0]!;
      expect(answered).toBeGreaterThanOrEqual(1000);
      expect(target.sent).toBeGreaterThanOrEqual(1000);
      // Every bad reply is an error with a code of the registry, none taken for a success.
      expect(target.ok).toBe(0);
      expect(target.timeouts).toBe(0);
      expect(target.errorCount).toBe(target.sent);
      for (const c of Object.keys(target.errors)) expect(KNOWN_CODES.has(c), c).toBe(true);
      expect(out).not.toMatch(/uncaught|"level":(50|60)/i);
    } finally {
      await nc.close();
      await nats.stop();
    }
  });
});
