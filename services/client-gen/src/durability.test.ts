import { describe, expect, it } from 'vitest';
import { ErrorCode, errorReply, type IngressReply, type IngressRequest } from '@vmsim/shared';
import { fnv1a32, hex } from './apps.ts';
import { DurabilityLedger, DurabilityWorkload, KeyState, ReadVerdict } from './durability.ts';
import type { Send } from './load.ts';
import { SteppedClock } from './testing/stepped-clock.ts';

const ok = (status: number, extra: Partial<Extract<IngressReply, { ok: true }>> = {}) =>
  ({ ok: true, status, bytes: 10, ...extra }) as Extract<IngressReply, { ok: true }>;

describe('DurabilityLedger', () => {
  const ledger = () => new DurabilityLedger({ vm: 'db1', seed: 7, prefix: 'dur/run1' });

  it('derives unique keys and values from the seed alone', () => {
    const a = ledger();
    const b = ledger();
    expect(a.key(3)).toBe('dur/run1:00000003');
    expect(a.value(3)).toEqual(b.value(3));
    expect(a.value(3)).not.toEqual(a.value(4));
    expect(new DurabilityLedger({ vm: 'db1', seed: 8, prefix: 'dur/run1' }).value(3)).not.toEqual(a.value(3));
    for (let i = 0; i < 50; i++) expect(a.value(i).length).toBeGreaterThanOrEqual(64);
  });

  it('an acknowledged key must read back with its value; absent or other bytes is lost', () => {
    const l = ledger();
    const [k0, k1, k2, k3] = [l.take(), l.take(), l.take(), l.take()];
    for (const k of [k0, k1, k2, k3]) l.attempt(k, ok(200));
    expect(l.acked).toBe(4);
    expect(l.check(k0, ok(200, { data: l.value(k0) }))).toBe(ReadVerdict.KEPT);
    expect(l.check(k1, ok(200, { digest: hex(fnv1a32(l.value(k1))) }))).toBe(ReadVerdict.KEPT);
    expect(l.check(k2, ok(404))).toBe(ReadVerdict.LOST);
    expect(l.check(k3, ok(200, { data: l.value(k0) }))).toBe(ReadVerdict.LOST);
    expect(l.result()).toMatchObject({ acked: 4, lost: 2, corrupt: 1, unacked: 0 });
    expect(l.result().examples).toEqual([`${l.key(k2)} lost`, `${l.key(k3)} lost`]);
  });

  it('an unacknowledged key may be absent or landed, never other bytes', () => {
    const l = ledger();
    const [a, b, c] = [l.take(), l.take(), l.take()];
    for (const k of [a, b, c]) {
      l.attempt(k, errorReply(ErrorCode.TIMEOUT, 'no reply'));
      l.giveUp(k);
    }
    expect(l.state(a)).toBe(KeyState.GAVE_UP);
    expect(l.check(a, ok(404))).toBe(ReadVerdict.ABSENT);
    expect(l.check(b, ok(200, { data: l.value(b) }))).toBe(ReadVerdict.LANDED);
    expect(l.check(c, ok(200, { data: new Uint8Array([1, 2, 3]) }))).toBe(ReadVerdict.CORRUPT);
    expect(l.result()).toMatchObject({
      acked: 0,
      lost: 0,
      unacked: 3,
      unackedAbsent: 1,
      unackedLanded: 1,
      corrupt: 1,
      attempts: 3,
      failedAttempts: { [ErrorCode.TIMEOUT]: 3 },
    });
  });

  it('a key acknowledged on a retry is acknowledged; a later failure does not undo it', () => {
    const l = ledger();
    const k = l.take();
    l.attempt(k, errorReply(ErrorCode.VM_CRASHED, 'crashed'));
    expect(l.state(k)).toBe(KeyState.PENDING);
    l.attempt(k, ok(200));
    l.attempt(k, errorReply(ErrorCode.TIMEOUT, 'late'));
    l.giveUp(k);
    expect(l.state(k)).toBe(KeyState.ACKED);
    expect(l.result()).toMatchObject({ acked: 1, unacked: 0, attempts: 3 });
  });

  it('counts keys never read back as unverified, and never checks an unwritten key', () => {
    const l = ledger();
    const k = l.take();
    l.attempt(k, ok(200));
    l.unverified(k);
    expect(l.result()).toMatchObject({ acked: 1, lost: 0, unverified: 1 });
    const never = l.take();
    expect(() => l.check(never, ok(404))).toThrow(/never written/);
    expect(l.written()).toEqual([k]);
  });

  it('rejects bad value sizes and key prefixes', () => {
    expect(() => new DurabilityLedger({ vm: 'v', seed: 1, prefix: 'p', valueBytes: { min: 10, max: 5 } })).toThrow();
    expect(() => new DurabilityLedger({ vm: 'v', seed: 1, prefix: 'a b' })).toThrow(/prefix/);
  });
});

/**
 * A db for the workload: a linearizable map whose PUTs may fail before applying, land but
 * answer an error (the client cannot tell), and whose "unsafe" mode keeps acknowledged
 * values in a cache that a power cut drops.
 */
class FlakyDb {
  readonly durable = new Map<string, Uint8Array>();
  readonly cache = new Map<string, Uint8Array>();
  down = false;
  puts = 0;
  private readonly clock: SteppedClock;
  private readonly unsafe: boolean;
  private readonly fate: (i: number) => 'ok' | 'refuse' | 'land-then-timeout';
  constructor(
    clock: SteppedClock,
    unsafe: boolean,
    fate: (i: number) => 'ok' | 'refuse' | 'land-then-timeout' = () => 'ok',
  ) {
    this.clock = clock;
    this.unsafe = unsafe;
    this.fate = fate;
  }

  readonly send: Send = (_vm, req: IngressRequest) =>
    new Promise((resolve) =>
      this.clock.at(this.clock.now() + 2, () => {
        if (req.app !== 'db') throw new Error('not a db request');
        if (this.down) return resolve(errorReply(ErrorCode.VM_CRASHED, 'down'));
        if (req.op === 'GET') {
          const v = this.cache.get(req.key) ?? this.durable.get(req.key);
          return resolve(v ? ok(200, { data: v }) : ok(404));
        }
        const fate = this.fate(this.puts++);
        if (fate === 'refuse') return resolve(errorReply(ErrorCode.VM_CRASHED, 'crashed'));
        (this.unsafe ? this.cache : this.durable).set(req.key, req.value!);
        resolve(fate === 'ok' ? ok(200) : errorReply(ErrorCode.TIMEOUT, 'no reply'));
      }),
    );

  powerCut(): void {
    this.cache.clear();
  }
}

describe('DurabilityWorkload', () => {
  it('writes until the target is acknowledged, retrying failures, and finds nothing lost on a safe db', async () => {
    const clock = new SteppedClock();
    const db = new FlakyDb(clock, false, (i) => (i % 7 === 3 ? 'refuse' : i % 11 === 5 ? 'land-then-timeout' : 'ok'));
    const w = new DurabilityWorkload({ vm: 'db1', seed: 1, prefix: 'd', clock, send: db.send, targetAcked: 200 });
    const done = w.write();
    await clock.drain();
    await done;
    const p = w.progress();
    expect(p.acked).toBeGreaterThanOrEqual(200);
    expect(p.acked).toBeLessThan(200 + 16);
    expect(p.failedAttempts).toBeGreaterThan(20);
    expect(p.inFlight).toBe(0);
    const verifying = w.verify();
    await clock.drain();
    const r = await verifying;
    expect(r).toMatchObject({ acked: p.acked, lost: 0, corrupt: 0, unverified: 0, unacked: 0 });
    expect(r.written).toBe(db.durable.size);
    expect(r.failedAttempts[ErrorCode.TIMEOUT]).toBeGreaterThan(0);
  });

  it('gives up after maxAttempts and judges the key unacknowledged, whether it landed or not', async () => {
    const clock = new SteppedClock();
    // Key 0 never gets an ok: its first attempt lands, the rest are refused.
    const db = new FlakyDb(clock, false, (i) => (i === 0 ? 'land-then-timeout' : i < 3 ? 'refuse' : 'ok'));
    const w = new DurabilityWorkload({
      vm: 'db1',
      seed: 1,
      prefix: 'd',
      clock,
      send: db.send,
      maxKeys: 5,
      concurrency: 1,
      maxAttempts: 3,
    });
    const done = w.write();
    await clock.drain();
    await done;
    const verifying = w.verify();
    await clock.drain();
    expect(await verifying).toMatchObject({ written: 5, acked: 4, unacked: 1, unackedLanded: 1, lost: 0 });
  });

  it('catches a db that acknowledges before flushing: a power cut loses acknowledged keys', async () => {
    const clock = new SteppedClock();
    const db = new FlakyDb(clock, true);
    const w = new DurabilityWorkload({ vm: 'db1', seed: 1, prefix: 'd', clock, send: db.send, maxKeys: 100 });
    const done = w.write();
    await clock.drain();
    await done;
    // Half the keys reached stable storage before the cut.
    let n = 0;
    for (const [k, v] of db.cache) if (n++ % 2 === 0) db.durable.set(k, v);
    db.powerCut();
    const verifying = w.verify();
    await clock.drain();
    const r = await verifying;
    expect(r.acked).toBe(100);
    expect(r.lost).toBe(50);
    expect(r.examples).toHaveLength(10);
  });

  it('retries reads while the VM is down and counts keys it never could read as unverified', async () => {
    const clock = new SteppedClock();
    const db = new FlakyDb(clock, false);
    const w = new DurabilityWorkload({
      vm: 'db1',
      seed: 1,
      prefix: 'd',
      clock,
      send: db.send,
      maxKeys: 10,
      maxReadAttempts: 4,
    });
    const done = w.write();
    await clock.drain();
    await done;
    db.down = true;
    clock.at(clock.now() + 100, () => (db.down = false));
    let verifying = w.verify();
    await clock.drain();
    expect(await verifying).toMatchObject({ acked: 10, lost: 0, unverified: 0 });
    db.down = true;
    verifying = w.verify();
    await clock.drain();
    expect(await verifying).toMatchObject({ acked: 10, lost: 0, unverified: 10 });
  });

  it('stop() ends the write phase; the key in hand is still settled', async () => {
    const clock = new SteppedClock();
    const db = new FlakyDb(clock, false);
    const w = new DurabilityWorkload({
      vm: 'db1',
      seed: 1,
      prefix: 'd',
      clock,
      send: db.send,
      targetAcked: 1_000_000,
      concurrency: 4,
    });
    const done = w.write();
    clock.at(50, () => w.stop());
    await clock.drain();
    await done;
    const p = w.progress();
    expect(p.acked).toBe(p.written);
    expect(p.acked).toBeGreaterThan(50);
    expect(p.acked).toBeLessThan(200);
  });

  it('needs a target or a key budget', () => {
    const clock = new SteppedClock();
    expect(
      () => new DurabilityWorkload({ vm: 'v', seed: 1, prefix: 'p', clock, send: new FlakyDb(clock, false).send }),
    ).toThrow(/targetAcked or maxKeys/);
  });
});
