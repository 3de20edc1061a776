import { describe, expect, it } from 'vitest';
import { VirtualClock, type IngressReply } from '@vmsim/shared';
import { DB_COSTS, DbApp } from './db-app.ts';
import { MiB } from './disk-layout.ts';
import { OS_PROFILES } from './os-profiles.ts';
import { appContext, testBytes } from './testing/app-harness.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const DISK = 256 * MiB;

function db(fm: FakeMachine, clock: VirtualClock, ackBeforeFlush: boolean): DbApp {
  return new DbApp({ ...appContext(fm, OS_PROFILES.linux, DISK), clock, ackBeforeFlush });
}

const put = (d: DbApp, key: string, value: Uint8Array): Promise<IngressReply> =>
  d.handle({ app: 'db', op: 'PUT', key, value, bytes: value.length + 40 });
const status = async (d: DbApp, key: string): Promise<number> => {
  const r = await d.handle({ app: 'db', op: 'GET', key, bytes: 40 });
  if (!r.ok) throw new Error(r.message);
  return r.status;
};

async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

/** Writes 20 keys, all acknowledged; returns the flushes they cost. */
async function write20(d: DbApp, fm: FakeMachine): Promise<number> {
  const before = fm.flushes;
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => put(d, `k${i}`, testBytes(`k${i}`, 200))));
  expect(replies.every((r) => r.ok && r.status === 200)).toBe(true);
  return fm.flushes - before;
}

async function present(d: DbApp): Promise<number> {
  let n = 0;
  for (let i = 0; i < 20; i++) if ((await status(d, `k${i}`)) === 200) n++;
  return n;
}

describe('DbApp with ackBeforeFlush (unsafe teaching toggle)', () => {
  it('the safe database keeps every acknowledged write across a power cut', async () => {
    const fm = new FakeMachine(DISK);
    const clock = new VirtualClock();
    const d = db(fm, clock, false);
    await d.start(true);
    expect(await write20(d, fm)).toBeGreaterThan(0);
    fm.powerCut();
    const after = db(fm, clock, false);
    await after.start(false);
    expect(await present(after)).toBe(20);
  });

  it('acknowledges without flushing: a power cut loses acknowledged writes, a guest crash does not', async () => {
    const fm = new FakeMachine(DISK);
    const clock = new VirtualClock();
    const d = db(fm, clock, true);
    await d.start(true);
    expect(await write20(d, fm)).toBe(0);
    expect(d.figures()).toMatchObject({ unsafeAck: 1, lazyFlushes: 0 });

    // The guest process dies: the records are in the (host's) disk cache, which survives.
    const crashed = db(fm, clock, true);
    await crashed.start(false);
    expect(await present(crashed)).toBe(20);

    // The power goes: the cache and every acknowledged record in it are gone.
    fm.powerCut();
    const cut = db(fm, clock, true);
    await cut.start(false);
    expect(await present(cut)).toBe(0);
  });

  it('flushes in the background lazyFlushMs after a write; what it flushed survives a power cut', async () => {
    const fm = new FakeMachine(DISK);
    const clock = new VirtualClock();
    const d = db(fm, clock, true);
    await d.start(true);
    const installed = fm.flushes;
    await write20(d, fm);
    clock.runUntil(DB_COSTS.lazyFlushMs - 1);
    await ticks(5);
    expect(fm.flushes).toBe(installed);
    clock.runUntil(DB_COSTS.lazyFlushMs);
    await ticks(5);
    expect(fm.flushes).toBe(installed + 1);
    expect(d.figures()['lazyFlushes']).toBe(1);
    fm.powerCut();
    const after = db(fm, clock, true);
    await after.start(false);
    expect(await present(after)).toBe(20);
  });

  it('stop() flushes what is pending (a clean shutdown loses nothing)', async () => {
    const fm = new FakeMachine(DISK);
    const clock = new VirtualClock();
    const d = db(fm, clock, true);
    await d.start(true);
    const installed = fm.flushes;
    await write20(d, fm);
    await d.stop();
    expect(fm.flushes).toBe(installed + 1);
    expect(clock.pending).toBe(0);
    fm.powerCut();
    const after = db(fm, clock, true);
    await after.start(false);
    expect(await present(after)).toBe(20);
  });
});
