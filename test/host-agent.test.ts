import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  HwDone,
  type HwDoneItem,
  HypercallReply,
  Inventory,
  Utilization,
  call,
  decode,
  encode,
  guestInboxPrefix,
  hardwareSubjects,
  namespace,
  waitFor,
  type NatsConnection,
} from '@vmsim/shared';
import { stopProcess } from '@vmsim/cli';
import { connectTo, serviceCreds, startTestNats, tempHome, testNamespace, type TestNats } from './helpers/nats.ts';

const HOST_AGENT = fileURLToPath(import.meta.resolve('@vmsim/host-agent/main'));

/** The host-agent on its own, driven the way the hypervisor drives it. */
describe('host-agent over the bus', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let agent: ChildProcess;
  let creds: Awaited<ReturnType<typeof serviceCreds>>;
  const ns = namespace(testNamespace());
  const home = tempHome();
  const replies = new Map<string, (data: Uint8Array) => void>();
  const dones: HwDoneItem[] = [];
  let ticket = 1;

  function startAgent(): ChildProcess {
    return spawn(process.execPath, [HOST_AGENT], {
      env: {
        NATS_URL: nats.url,
        VMSIM_NS: ns,
        VMSIM_HOST: 'h1',
        VMSIM_TIME_SCALE: '1',
        VMSIM_DATA_DIR: path.join(home, 'data'),
        LOG_LEVEL: 'warn',
        NATS_CREDS: creds['host-agent'],
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }

  /** The inventory, once the (re)started host-agent answers. */
  async function inventory(): Promise<Inventory> {
    let inv: Inventory | undefined;
    await waitFor(
      async () => {
        inv = await call(nc, hardwareSubjects.inventory(ns, 'h1'), {}, Inventory, 1000).catch(() => undefined);
        return inv !== undefined;
      },
      15_000,
      'the host-agent to answer',
    );
    return inv!;
  }

  /** Dispatches one operation with a reply subject of ours, as the hypervisor would. */
  function op(subject: string, body: Record<string, unknown>): Promise<{ reply: HypercallReply; t: number }> {
    const t = ticket++;
    const replyTo = `${guestInboxPrefix(ns, 'v1')}.${t}`;
    return new Promise((resolve) => {
      replies.set(replyTo, (data) => resolve({ reply: decode(data, HypercallReply), t }));
      nc.publish(subject, encode({ t, vm: 'v1', replyTo, waitMs: 0, ...body }));
    });
  }

  beforeAll(async () => {
    nats = await startTestNats();
    creds = await serviceCreds(nats, home, { ns, host: 'h1' });
    nc = await connectTo(nats);
    // Replies go where the hypervisor sends a guest's: its inbox (the host-agent may publish nowhere else).
    nc.subscribe(`${guestInboxPrefix(ns, 'v1')}.>`, {
      callback: (_e, m) => {
        replies.get(m.subject)?.(m.data);
        replies.delete(m.subject);
      },
    });
    nc.subscribe(hardwareSubjects.done(ns, 'h1'), {
      callback: (_e, m) => void dones.push(...decode(m.data, HwDone).done),
    });
    agent = startAgent();
    await inventory();
  });

  afterAll(async () => {
    if (agent) await stopProcess(agent);
    await nc?.close();
    await nats?.stop();
  });

  it('describes its hardware', async () => {
    const inv = await inventory();
    expect(inv.profile.name).toBe('small');
    expect(inv.profile.cpu.sockets * inv.profile.cpu.coresPerSocket).toBe(4);
    expect(inv.profile.disks.map((d) => d.id)).toEqual(['sda', 'sdb']);
  });

  it('runs a CPU burst for cycles / clock, answers the requester directly and reports done', async () => {
    const { reply, t } = await op(hardwareSubjects.cpu(ns, 'h1'), { cycles: 28_000_000 }); // 10 ms at 2.8 GHz
    expect(reply.ok && reply.serviceMs).toBeCloseTo(10, 6);
    await expect.poll(() => dones.some((d) => d.t === t && d.ok && d.device === 'cpu')).toBe(true);
  });

  it('refuses work beyond its cores, with an error to the requester and the slot back to the scheduler', async () => {
    const long = Array.from({ length: 4 }, () => op(hardwareSubjects.cpu(ns, 'h1'), { cycles: 560_000_000 })); // 200 ms each
    const extra = await op(hardwareSubjects.cpu(ns, 'h1'), { cycles: 1 });
    expect(extra.reply.ok).toBe(false);
    expect(!extra.reply.ok && extra.reply.code).toBe(ErrorCode.DEVICE_BUSY);
    await expect.poll(() => dones.some((d) => d.t === extra.t && !d.ok)).toBe(true);
    for (const r of await Promise.all(long)) expect(r.reply.ok).toBe(true);
  });

  it('answers a schema-invalid operation with an error code and keeps serving', async () => {
    const bad = await op(hardwareSubjects.disk(ns, 'h1', 'sda'), { op: 'read', offset: -5, length: 10 });
    expect(!bad.reply.ok && bad.reply.code).toBe(ErrorCode.SCHEMA);
    const outside = await op(hardwareSubjects.disk(ns, 'h1', 'sda'), { op: 'read', offset: 2 ** 50, length: 10 });
    expect(!outside.reply.ok && outside.reply.code).toBe(ErrorCode.OUT_OF_RANGE);
    nc.publish(hardwareSubjects.cpu(ns, 'h1'), new Uint8Array([0xff, 0x00, 0x13]));
    const ok = await op(hardwareSubjects.cpu(ns, 'h1'), { cycles: 1000 });
    expect(ok.reply.ok).toBe(true);
  });

  it('keeps flushed writes and loses unflushed ones when its power is cut', async () => {
    const disk = hardwareSubjects.disk(ns, 'h1', 'sdb');
    const durable = new TextEncoder().encode('flushed-before-the-cut');
    const volatile = new TextEncoder().encode('only-in-the-write-cache');
    expect((await op(disk, { op: 'write', offset: 1 << 20, data: durable })).reply.ok).toBe(true);
    expect((await op(disk, { op: 'flush' })).reply.ok).toBe(true);
    expect((await op(disk, { op: 'write', offset: 2 << 20, data: volatile })).reply.ok).toBe(true);
    const cached = await op(disk, { op: 'read', offset: 2 << 20, length: volatile.length });
    expect(cached.reply.ok && new TextDecoder().decode(cached.reply.data)).toBe('only-in-the-write-cache');
    const util = await call(nc, hardwareSubjects.utilization(ns, 'h1'), {}, Utilization);
    expect(util.disks.find((d) => d.id === 'sdb')!.dirtyBytes).toBeGreaterThan(0);

    agent.kill('SIGKILL');
    await new Promise((r) => agent.once('exit', r));
    agent = startAgent();
    await inventory();
    const a = await op(disk, { op: 'read', offset: 1 << 20, length: durable.length });
    const b = await op(disk, { op: 'read', offset: 2 << 20, length: volatile.length });
    expect(a.reply.ok && new TextDecoder().decode(a.reply.data)).toBe('flushed-before-the-cut');
    expect(b.reply.ok && [...b.reply.data!].every((x) => x === 0)).toBe(true);
  });
});
