import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  VirtualClock,
  createLogger,
  decodeRaw,
  encode,
  hardwareSubjects,
  namespace,
  type Msg,
  type NatsConnection,
} from '@vmsim/shared';
import { HostAgent } from './agent.ts';
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

async function agent() {
  const bus = fakeBus();
  const ns = namespace('t');
  const clock = new VirtualClock();
  const a = HostAgent.create({
    nc: bus.nc,
    ns,
    host: 'h',
    hardware: new Hardware(loadProfile('small'), clock),
    stores: new Map(),
    clock,
    logger: createLogger({ svc: 'host-agent', host: 'h', level: 'silent' }),
    bootId: 'b',
    timeScale: 1,
  });
  await a.start();
  return { a, ns, ...bus };
}

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
