import { describe, expect, it } from 'vitest';
import { ErrorCode, VmsimError, type IngressReply } from '@vmsim/shared';
import type { AppContext } from './app.ts';
import { DB_COSTS, DB_RECORDS_OFFSET, DbApp } from './db-app.ts';
import { MiB, digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import { OS_PROFILES } from './os-profiles.ts';
import { PowerPlug, appContext, testBytes } from './testing/app-harness.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const DISK = 256 * MiB;
const linux = OS_PROFILES.linux;

const ctx = (machine: Machine, diskBytes = DISK): AppContext => appContext(machine, linux, diskBytes);

async function freshDb(diskBytes = DISK): Promise<{ fm: FakeMachine; plug: PowerPlug; db: DbApp }> {
  const fm = new FakeMachine(diskBytes);
  const plug = new PowerPlug(fm);
  const db = new DbApp(ctx(plug, diskBytes));
  await db.start(true);
  return { fm, plug, db };
}

async function recovered(fm: FakeMachine, diskBytes = DISK): Promise<DbApp> {
  const db = new DbApp(ctx(fm, diskBytes));
  await db.start(false);
  return db;
}

const bytes = testBytes;

const put = (db: DbApp, key: string, value: Uint8Array): Promise<IngressReply> =>
  db.handle({ app: 'db', op: 'PUT', key, value, bytes: value.length + 40 });
const get = (db: DbApp, key: string): Promise<IngressReply> => db.handle({ app: 'db', op: 'GET', key, bytes: 40 });
const scan = (db: DbApp, key: string, limit: number): Promise<IngressReply> =>
  db.handle({ app: 'db', op: 'SCAN', key, limit, bytes: 40 });

async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

/** Switches the VM off: calls in flight land (one microtask), then unflushed writes are lost. */
async function powerCut(plug: PowerPlug, fm: FakeMachine): Promise<void> {
  plug.on = false;
  await ticks(3);
  fm.powerCut();
}

function ok(r: IngressReply): Extract<IngressReply, { ok: true }> {
  if (!r.ok) throw new Error(`expected a success, got ${r.code}: ${r.message}`);
  return r;
}

describe('DbApp', () => {
  it('round-trips real bytes and answers 404 for missing keys', async () => {
    const { fm, db } = await freshDb();
    const v1 = bytes('v1', 1000);
    const v2 = bytes('v2', 64 * 1024);
    expect(ok(await put(db, 'user:1', v1))).toMatchObject({ status: 200, digest: hex(digest(v1)), meta: { seq: 1 } });
    expect(ok(await put(db, 'user:2', v2)).meta).toEqual({ seq: 2 });
    const r1 = ok(await get(db, 'user:1'));
    expect(r1.status).toBe(200);
    expect(r1.data).toEqual(v1);
    expect(r1.digest).toBe(hex(digest(v1)));
    expect(ok(await get(db, 'user:2')).data).toEqual(v2);
    expect(await get(db, 'user:3')).toMatchObject({ ok: true, status: 404 });
    // An overwrite wins, and the key is counted once.
    const v3 = bytes('v3', 10);
    await put(db, 'user:1', v3);
    expect(ok(await get(db, 'user:1')).data).toEqual(v3);
    expect(db.figures()).toMatchObject({ keys: 2, puts: 3, gets: 4 });
    expect(fm.flushes).toBeGreaterThanOrEqual(3);
  });

  it('charges CPU including syscalls, and one disk read per GET', async () => {
    const { fm, db } = await freshDb();
    const v = bytes('v', 500);
    await put(db, 'k', v);
    const [cycles, reads] = [fm.cpuCycles, fm.reads];
    await get(db, 'k');
    expect(fm.reads - reads).toBe(1);
    expect(fm.cpuCycles - cycles).toBe(DB_COSTS.getCycles + DB_COSTS.getSyscalls * linux.syscallCycles + 500 * 2);
  });

  it('refuses requests for another app kind and malformed PUTs', async () => {
    const { db } = await freshDb();
    expect(await db.handle({ app: 'mail', op: 'LIST', mailbox: 'x', bytes: 10 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
    expect(await db.handle({ app: 'db', op: 'PUT', key: 'k', bytes: 10 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
  });

  it('scans keys in order from the start key, up to the limit', async () => {
    const { fm, db } = await freshDb();
    const keys = ['d', 'b2', 'a', 'e', 'c', 'b'];
    for (const k of keys) await put(db, k, bytes(k, 100));
    const r = ok(await scan(db, 'b', 3));
    expect(r.meta).toEqual({ count: 3 });
    let h = digest(new Uint8Array(0));
    for (const k of ['b', 'b2', 'c']) h = digest(bytes(k, 100), h);
    expect(r.digest).toBe(hex(h));
    expect(ok(await scan(db, 'bb', 100)).meta).toEqual({ count: 3 }); // c, d, e
    expect(ok(await scan(db, 'f', 5)).meta).toEqual({ count: 0 });
    // The same order after recovery.
    const again = await recovered(fm);
    expect(ok(await scan(again, 'b', 3)).digest).toBe(hex(h));
    expect(again.figures().scans).toBe(1);
  });

  it('group commit: concurrent PUTs share far fewer flushes than PUTs', async () => {
    const { fm, db } = await freshDb();
    const before = fm.flushes;
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => put(db, `k${i}`, bytes(`v${i}`, 200))));
    expect(replies.every((r) => r.ok && r.status === 200)).toBe(true);
    expect(new Set(replies.map((r) => ok(r).meta!['seq'])).size).toBe(200);
    expect(fm.flushes - before).toBeLessThanOrEqual(3);
    const f = db.figures();
    expect(f.batches).toBe(fm.flushes - before);
    expect(f.avgBatchSize).toBeGreaterThan(50);
    for (let i = 0; i < 200; i += 37) expect(ok(await get(db, `k${i}`)).data).toEqual(bytes(`v${i}`, 200));
  });

  it('PUTs that arrive during a flush join the next batch', async () => {
    const { fm, db } = await freshDb();
    const before = fm.flushes;
    const first = put(db, 'first', bytes('f', 10));
    await ticks(4); // the first batch is on its way to the disk
    const rest = Array.from({ length: 30 }, (_, i) => put(db, `r${i}`, bytes(`r${i}`, 10)));
    await Promise.all([first, ...rest]);
    expect(fm.flushes - before).toBe(2);
    expect(db.figures()).toMatchObject({ batches: 2, avgBatchSize: 15.5 });
  });

  it('keeps every acknowledged PUT across a power cut, wherever the cut falls', async () => {
    let sawPartial = false;
    for (const cutAfter of [0, 1, 2, 3, 5, 8, 12, 20, 30, 45, 70, 100, 150, 400]) {
      const { fm, plug, db } = await freshDb();
      for (let i = 0; i < 5; i++) ok(await put(db, `base${i}`, bytes(`base${i}`, 300)));
      const issued = new Map<string, Uint8Array>();
      const acked = new Map<string, Uint8Array>();
      const burst = async (): Promise<void> => {
        for (let wave = 0; wave < 6; wave++) {
          for (let i = 0; i < 10; i++) {
            const key = `w${wave}:${i}`;
            const value = bytes(key, 50 + 97 * i);
            issued.set(key, value);
            void put(db, key, value).then((r) => {
              if (r.ok && r.status === 200) acked.set(key, value);
            });
          }
          await ticks(7);
        }
      };
      void burst();
      await ticks(cutAfter);
      await powerCut(plug, fm);
      await ticks(50); // replies whose flush did complete may still arrive
      if (acked.size > 0 && acked.size < issued.size) sawPartial = true;

      const db2 = await recovered(fm);
      for (let i = 0; i < 5; i++) expect(ok(await get(db2, `base${i}`)).data).toEqual(bytes(`base${i}`, 300));
      for (const [key, value] of acked) expect(ok(await get(db2, key)).data, `acked ${key}`).toEqual(value);
      // Unacknowledged PUTs may or may not be there, but never with other bytes.
      let present = 0;
      for (const [key, value] of issued) {
        const r = ok(await get(db2, key));
        if (r.status === 200) {
          present++;
          expect(r.data).toEqual(value);
        } else expect(r.status).toBe(404);
      }
      expect(db2.figures().keys).toBe(5 + present);
      expect(ok(await scan(db2, '', 1000)).meta).toEqual({ count: 5 + present });
      // The log goes on from where recovery stopped.
      ok(await put(db2, 'after', bytes('after', 70)));
      const db3 = await recovered(fm);
      expect(ok(await get(db3, 'after')).data).toEqual(bytes('after', 70));
      expect(db3.figures().keys).toBe(6 + present);
    }
    // The cut points really fell between acknowledgements, not only before or after all of them.
    expect(sawPartial).toBe(true);
  });

  it('ignores a torn record at the log tail on recovery', async () => {
    const { fm, db } = await freshDb();
    for (let i = 0; i < 10; i++) await put(db, `k${i}`, bytes(`k${i}`, 1000));
    const goodBytes = db.figures().logBytes;
    await put(db, 'torn', bytes('torn', 3000));
    const size = db.figures().logBytes - goodBytes;
    // Only the first half of the last record made it to the platters.
    const at = DB_RECORDS_OFFSET + goodBytes;
    await fm.write(0, at + size / 2, new Uint8Array(size / 2));
    await fm.flush(0);
    const db2 = await recovered(fm);
    expect(db2.figures()).toMatchObject({ keys: 10, logBytes: goodBytes });
    expect(await get(db2, 'torn')).toMatchObject({ ok: true, status: 404 });
    for (let i = 0; i < 10; i++) expect(ok(await get(db2, `k${i}`)).data).toEqual(bytes(`k${i}`, 1000));
    // New records overwrite the torn one and are themselves recovered.
    await put(db2, 'next', bytes('next', 20));
    const db3 = await recovered(fm);
    expect(db3.figures().keys).toBe(11);
    expect(ok(await get(db3, 'next')).data).toEqual(bytes('next', 20));
  });

  it('ignores garbage after the tail and records of an earlier install', async () => {
    const { fm, db } = await freshDb();
    await put(db, 'a', bytes('a', 10));
    await fm.write(0, DB_RECORDS_OFFSET + db.figures().logBytes, bytes('junk', 8192));
    await fm.flush(0);
    expect((await recovered(fm)).figures().keys).toBe(1);
    // A reinstall starts an empty store even though the old records are still on the disk.
    await new DbApp(ctx(fm)).start(true);
    expect((await recovered(fm)).figures()).toMatchObject({ keys: 0, logBytes: 0 });
  });

  it('detects a corrupt record on GET', async () => {
    const { fm, db } = await freshDb();
    await put(db, 'k', bytes('k', 100));
    await fm.write(0, DB_RECORDS_OFFSET + 24 + 1 + 50, new Uint8Array([1, 2, 3]));
    expect(await get(db, 'k')).toMatchObject({ ok: false, code: ErrorCode.IO });
  });

  it('answers NO_SPACE once the log fills the data area, keeping what it stored', async () => {
    const disk = 129 * MiB;
    const { fm, db } = await freshDb(disk);
    let stored = 0;
    let last: IngressReply;
    for (;;) {
      last = await put(db, `big${stored}`, bytes(`big${stored}`, 64 * 1024));
      if (!last.ok) break;
      stored++;
    }
    expect(last).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
    expect(stored).toBe(15);
    const db2 = await recovered(fm, disk);
    expect(db2.figures().keys).toBe(stored);
    expect(ok(await get(db2, 'big14')).data).toEqual(bytes('big14', 64 * 1024));
  });

  it('refuses writes after a failed log write instead of leaving a hole', async () => {
    const { fm, db } = await freshDb();
    await put(db, 'a', bytes('a', 10));
    fm.failNext = new VmsimError(ErrorCode.IO, 'disk error');
    expect(await put(db, 'b', bytes('b', 10))).toMatchObject({ ok: false, code: ErrorCode.IO });
    expect(await put(db, 'c', bytes('c', 10))).toMatchObject({ ok: false, code: ErrorCode.IO });
    expect(ok(await get(db, 'a')).status).toBe(200);
    await db.stop();
  });

  it('stop() waits for the batch in flight', async () => {
    const { fm, db } = await freshDb();
    const p = Promise.all(Array.from({ length: 20 }, (_, i) => put(db, `k${i}`, bytes(`k${i}`, 10))));
    await ticks(2);
    await db.stop();
    fm.powerCut();
    expect((await recovered(fm)).figures().keys).toBe(20);
    await p;
  });
});
