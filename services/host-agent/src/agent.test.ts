import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ErrorCode,
  VirtualClock,
  createLogger,
  decodeRaw,
  encode,
  hardwareSubjects,
  namespace,
  waitFor,
  type Msg,
  type NatsConnection,
} from '@vmsim/shared';
import { HostAgent } from './agent.ts';
import { BlockStore } from './devices/block-store.ts';
import { Hardware } from './hardware.ts';
import { loadProfile } from './profiles.ts';

/** Just enough of a NATS connection: publish refuses whitespace subjects, as nats.js does. */
function fakeBus() {
  const subs = new Map<string, (err: Error | null, m: Msg) => void>();
  const published: { subject: string; data: unknown }[] = [];
  const publish = (subject: string, data: Uint8Array): void => {
    if (subject.length === 0 || /\s/.test(subject)) throw new Error(`illegal subject: '${subject}'`);
    published.push({ subject, data: decodeRaw(data) });
  };
  const nc = {
    subscribe: (subject: string, opts: { callback: (err: Error | null, m: Msg) => void }) => {
      subs.set(subject, opts.callback);
      return { unsubscribe: () => subs.delete(subject) };
    },
    publish,
    flush: async () => undefined,
  } as unknown as NatsConnection;
  const deliver = (pattern: string, subject: string, body: unknown, reply?: string): void => {
    const data = encode(body);
    const m = { subject, data, reply, respond: (d: Uint8Array) => (reply ? (publish(reply, d), true) : false) };
    subs.get(pattern)!(null, m as unknown as Msg);
  };
  return { nc, deliver, published };
}

async function agent(stores = new Map<string, BlockStore>()) {
  const bus = fakeBus();
  const ns = namespace('t');
  const clock = new VirtualClock();
  const a = HostAgent.create({
    nc: bus.nc,
    ns,
    host: 'h',
    hardware: new Hardware(loadProfile('small'), clock),
    stores,
    clock,
    logger: createLogger({ svc: 'host-agent', host: 'h', level: 'silent' }),
    bootId: 'b',
    timeScale: 1,
  });
  await a.start();
  return { a, ns, clock, ...bus };
}

const dirs: string[] = [];
const open: BlockStore[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
/** The agent with real stores for the 'small' profile's two disks, sda and sdb. */
async function agentWithDisks() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-agent-'));
  dirs.push(dir);
  const stores = new Map<string, BlockStore>();
  for (const id of ['sda', 'sdb']) {
    const s = BlockStore.open(path.join(dir, `${id}.img`), 16 * MiB, { cacheBytes: 64 * MiB, fsync: false });
    open.push(s);
    stores.set(id, s);
  }
  const x = await agent(stores);
  let t = 0;
  /** Dispatches one disk operation and runs the model until it completes; returns its reply and done item. */
  const run = async (disk: string, body: Record<string, unknown>) => {
    const ticket = ++t;
    const replyTo = `reply.${ticket}`;
    x.published.length = 0;
    const subject = hardwareSubjects.disk(x.ns, 'h', disk);
    x.deliver(hardwareSubjects.anyDisk(x.ns, 'h'), subject, { t: ticket, vm: 'v', replyTo, waitMs: 0, ...body });
    x.clock.runAll();
    const reply = () => x.published.find((p) => p.subject === replyTo)?.data as Record<string, unknown> | undefined;
    const done = () =>
      x.published
        .filter((p) => p.subject.endsWith('.done'))
        .flatMap((p) => (p.data as { done: { t: number }[] }).done)
        .find((d) => d.t === ticket);
    // The reply may wait for a flush's promise, the done batch for the next event-loop turn.
    await waitFor(() => reply() !== undefined && done() !== undefined, 2000, `reply and done of ticket ${ticket}`, 1);
    return { reply: reply(), done: done() };
  };
  return { ...x, stores, run };
}
const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) % 251));

describe('host-agent refusals', () => {
  it('a bad operation with an unusable replyTo is answered on its NATS reply, and never throws out of the callback', async () => {
    const { a, ns, deliver, published } = await agent();
    const cpu = hardwareSubjects.cpu(ns, 'h');
    expect(() =>
      deliver(cpu, cpu, { t: 3, vm: 'v', replyTo: 'a b', waitMs: 0, cycles: 'many' }, '_INBOX.fz.1'),
    ).not.toThrow();
    expect(published.find((p) => p.subject === 'a b')).toBeUndefined();
    expect(published.find((p) => p.subject === '_INBOX.fz.1')?.data).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
    // The ticket is well-formed: the hypervisor gets its slot back, on the next turn.
    await new Promise((r) => setImmediate(r));
    expect(published.find((p) => p.subject.endsWith('.done'))?.data).toEqual({
      done: [{ t: 3, device: 'cpu', ok: false, serviceMs: 0 }],
    });
    expect(a.stats()).toMatchObject({ rejected: 1, pendingDone: 0, flushing: 0 });
  });

  it('a malformed ticket or an over-long device name never joins a completion batch', async () => {
    const { ns, deliver, published } = await agent();
    const anyDisk = hardwareSubjects.anyDisk(ns, 'h');
    deliver(anyDisk, `${ns}.hw.h.disk.${'z'.repeat(200)}`, { t: 4, vm: 'v', replyTo: 'r', waitMs: 0, op: 'flush' });
    for (const t of [-1, 1.5, 2 ** 60, 'x', null]) {
      deliver(hardwareSubjects.cpu(ns, 'h'), hardwareSubjects.cpu(ns, 'h'), { t, replyTo: 'r', cycles: -1 });
    }
    await new Promise((r) => setImmediate(r));
    const batches = published.filter((p) => p.subject.endsWith('.done')).map((p) => p.data as { done: unknown[] });
    expect(batches).toHaveLength(1);
    expect(batches[0]!.done).toEqual([{ t: 4, device: `disk.${'z'.repeat(59)}`, ok: false, serviceMs: 0 }]);
    // Every refusal still reached the operation's own replyTo.
    expect(published.filter((p) => p.subject === 'r')).toHaveLength(6);
  });
});

describe('host-agent zero, zeros-read and copy', () => {
  it('a zeros-read answers zeros timed like a read, and leaves the written bytes alone', async () => {
    const { run, a, stores } = await agentWithDisks();
    const data = pattern(10_000, 1);
    expect((await run('sda', { op: 'write', offset: 4000, data })).reply).toMatchObject({ ok: true });
    const reads = vi.spyOn(stores.get('sda')!, 'read');
    const zeros = await run('sda', { op: 'read', offset: 4000, length: 10_000, zeros: true });
    expect(reads).not.toHaveBeenCalled();
    expect(zeros.reply).toMatchObject({ ok: true });
    expect(Buffer.from(zeros.reply!.data as Uint8Array).equals(Buffer.alloc(10_000))).toBe(true);
    expect(zeros.done).toMatchObject({ device: 'disk.sda', ok: true });
    const plain = await run('sda', { op: 'read', offset: 4000, length: 10_000 });
    expect(Buffer.from(plain.reply!.data as Uint8Array).equals(data)).toBe(true);
    // Same disk, same size, idle both times: the same modeled time.
    expect(zeros.done!).toMatchObject({ serviceMs: (plain.done as unknown as { serviceMs: number }).serviceMs });
    expect(a.stats()).toMatchObject({ inFlight: { 'disk.sda': 0 }, pendingDone: 0, rejected: 0 });
  });

  it('zero clears a range, without data in its reply', async () => {
    const { run, stores } = await agentWithDisks();
    await run('sdb', { op: 'write', offset: 0, data: pattern(5 * 4096, 2) });
    const z = await run('sdb', { op: 'zero', offset: 100, length: 3 * 4096 });
    expect(z.reply).toEqual({ ok: true, waitMs: 0, serviceMs: expect.any(Number) });
    expect(z.done).toMatchObject({ device: 'disk.sdb', ok: true });
    const sdb = stores.get('sdb')!;
    expect(sdb.read(100, 3 * 4096).equals(Buffer.alloc(3 * 4096))).toBe(true);
    expect(sdb.read(0, 100).equals(pattern(5 * 4096, 2).subarray(0, 100))).toBe(true);
    expect(sdb.read(100 + 3 * 4096, 10).equals(pattern(5 * 4096, 2).subarray(100 + 3 * 4096, 110 + 3 * 4096))).toBe(
      true,
    );
  });

  it('zero fill costs a flash drive one small command (Write Zeroes) and a spinning disk the whole write', async () => {
    const { run, a } = await agentWithDisks();
    const diskBytes = (id: string) => a.utilization().devices.find((d) => d.device === id)!.bytes;
    const before = { sda: diskBytes('disk.sda'), sdb: diskBytes('disk.sdb') };
    await run('sda', { op: 'zero', offset: 0, length: 1024 * 1024 });
    await run('sdb', { op: 'zero', offset: 0, length: 1024 * 1024 });
    expect(diskBytes('disk.sda') - before.sda).toBe(4096); // ssd
    expect(diskBytes('disk.sdb') - before.sdb).toBe(1024 * 1024); // hdd
  });

  it('copy moves the current bytes to another disk and within one disk', async () => {
    const { run, stores, a } = await agentWithDisks();
    const data = pattern(3 * 4096 + 17, 3);
    await run('sda', { op: 'write', offset: 8192, data });
    const diskBytes = (id: string) => a.utilization().devices.find((d) => d.device === id)!.bytes;
    const before = { sda: diskBytes('disk.sda'), sdb: diskBytes('disk.sdb') };
    const across = await run('sda', { op: 'copy', offset: 8192, length: data.length, to: { disk: 'sdb', offset: 5 } });
    // Timed on the source disk only, as a read plus a write.
    expect(diskBytes('disk.sda') - before.sda).toBe(2 * data.length);
    expect(diskBytes('disk.sdb') - before.sdb).toBe(0);
    expect(across.reply).toEqual({ ok: true, waitMs: 0, serviceMs: expect.any(Number) });
    expect(across.done).toMatchObject({ device: 'disk.sda', ok: true });
    expect(stores.get('sdb')!.read(5, data.length).equals(data)).toBe(true);
    // Overlapping, within sda: the target gets the source as it was.
    const within = await run('sda', {
      op: 'copy',
      offset: 8192,
      length: data.length,
      to: { disk: 'sda', offset: 9000 },
    });
    expect(within.reply).toMatchObject({ ok: true });
    expect(stores.get('sda')!.read(9000, data.length).equals(data)).toBe(true);
    expect(stores.get('sda')!.read(8192, 808).equals(data.subarray(0, 808))).toBe(true);
    expect(a.stats()).toMatchObject({ inFlight: { 'disk.sda': 0, 'disk.sdb': 0 }, pendingDone: 0, rejected: 0 });
  });

  it('a disk with a full queue refuses a zero before any byte moves', async () => {
    const { run, stores, a, deliver, ns, clock } = await agentWithDisks();
    await run('sdb', { op: 'write', offset: 0, data: pattern(4096, 5) });
    const depth = a.utilization().devices.find((d) => d.device === 'disk.sdb')!.capacity;
    const subject = hardwareSubjects.disk(ns, 'h', 'sdb');
    for (let i = 0; i < depth; i++) {
      deliver(hardwareSubjects.anyDisk(ns, 'h'), subject, {
        t: 1000 + i,
        vm: 'v',
        replyTo: 'busy',
        waitMs: 0,
        op: 'read',
        offset: 0,
        length: 4096,
      });
    }
    expect(a.stats().inFlight['disk.sdb']).toBe(depth);
    const busy = await run('sdb', { op: 'zero', offset: 0, length: 4096 });
    expect(busy.reply).toMatchObject({ ok: false, code: ErrorCode.DEVICE_BUSY });
    expect(busy.done).toMatchObject({ device: 'disk.sdb', ok: false });
    // run() let the queued reads complete; the zero never happened.
    expect(clock.pending).toBe(0);
    expect(stores.get('sdb')!.read(0, 4096).equals(pattern(4096, 5))).toBe(true);
  });

  it('a copy to an unknown disk or out of range is refused with no byte moved and no slot held', async () => {
    const { run, stores, a } = await agentWithDisks();
    await run('sdb', { op: 'write', offset: 0, data: pattern(4096, 4) });
    const bad = await run('sda', { op: 'copy', offset: 0, length: 4096, to: { disk: 'sdz', offset: 0 } });
    expect(bad.reply).toMatchObject({ ok: false, code: ErrorCode.NO_SUCH_DEVICE });
    expect(String(bad.reply!.message)).toMatch(/to\.disk.*sdz/);
    expect(bad.done).toEqual({ t: expect.any(Number), device: 'disk.sda', ok: false, serviceMs: 0 });
    const far = await run('sda', { op: 'copy', offset: 0, length: 4096, to: { disk: 'sdb', offset: 16 * MiB - 1 } });
    expect(far.reply).toMatchObject({ ok: false, code: ErrorCode.OUT_OF_RANGE });
    expect(String(far.reply!.message)).toMatch(/to\.offset.*sdb/);
    expect(far.done).toMatchObject({ device: 'disk.sda', ok: false });
    const src = await run('sda', { op: 'copy', offset: 16 * MiB - 1, length: 2, to: { disk: 'sdb', offset: 0 } });
    expect(src.reply).toMatchObject({ ok: false, code: ErrorCode.OUT_OF_RANGE });
    expect(stores.get('sdb')!.read(0, 4096).equals(pattern(4096, 4))).toBe(true);
    expect(a.stats()).toMatchObject({ inFlight: { 'disk.sda': 0, 'disk.sdb': 0 }, pendingDone: 0, rejected: 3 });
  });
});
