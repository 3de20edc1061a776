import { describe, expect, it } from 'vitest';
import { createRng, ErrorCode, type IngressReply, type Logger } from '@vmsim/shared';
import type { Send } from './load.ts';
import { FakeGuest } from './testing/fake-guest.ts';
import { runToEnd } from './testing/run.ts';
import { SteppedClock } from './testing/stepped-clock.ts';

/** A fake logger that keeps warn calls. */
function warnings(): { logger: Logger; seen: unknown[] } {
  const seen: unknown[] = [];
  return { seen, logger: { warn: (obj: unknown) => seen.push(obj) } as unknown as Logger };
}

describe('integrity checks', () => {
  it.each(['a', 'b', 'c'])(
    'db: no false alarm when writes, reads, timeouts and late replies overlap (seed %s)',
    async (seed) => {
      const clock = new SteppedClock();
      const rng = createRng(`guest-${seed}`);
      // Few keys, random service times, some past the timeout, effects anywhere inside them.
      const guest = new FakeGuest(clock, { delayMs: () => 1 + rng.next() * 40, applyAt: () => rng.next() });
      const summary = await runToEnd(
        {
          seed,
          targets: [
            { vm: 'db1', app: 'db', ratePerS: 2_000, keys: 5, keySkew: 0, mix: { GET: 1, PUT: 1 } },
            { model: 'closed', vm: 'db1', app: 'db', users: 20, thinkMs: 2, keys: 5, keySkew: 0 },
          ],
          durationMs: 5_000,
          timeoutMs: 30,
        },
        clock,
        guest.send,
      );
      for (const t of summary.targets) {
        expect(t.timeouts).toBeGreaterThan(0);
        // Replies after their timeout still teach the history (the last ones come after the run).
        expect(t.late).toBeGreaterThan(0);
        expect(t.integrity.failed).toBe(0);
        expect(t.errors).toEqual({});
      }
      expect(summary.targets[0]!.integrity.checked).toBeGreaterThan(2_000);
    },
  );

  it('db: a GET returning another value than was written is a VMSIM_ERR_IO error', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock);
    const { logger, seen } = warnings();
    // The server flips a bit of every value it returns.
    const send: Send = async (vm, req) => {
      const r = await guest.send(vm, req);
      if (!(r.ok && r.data)) return r;
      const data = r.data.slice();
      data[0]! ^= 1;
      return { ...r, data };
    };
    const summary = await runToEnd(
      { targets: [{ vm: 'db1', app: 'db', ratePerS: 500, keys: 100 }], durationMs: 10_000, logger },
      clock,
      send,
    );
    const t = summary.targets[0]!;
    expect(t.integrity.checked).toBeGreaterThan(1_000);
    expect(t.integrity.failed).toBe(t.integrity.checked);
    expect(t.errors).toEqual({ [ErrorCode.IO]: t.integrity.failed });
    expect(t.ok).toBe(t.sent - t.integrity.failed);
    expect(t.latencyMs.count).toBe(t.ok);
    // Logged, but only the first few.
    expect(seen.length).toBe(5);
    expect(seen[0]).toMatchObject({ vm: 'db1', op: 'GET', code: ErrorCode.IO });
  });

  it('db: an acknowledged write that is gone is a VMSIM_ERR_IO error', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock);
    // The store loses everything at 5 s (a write-back cache lost in a crash).
    clock.at(5_000, () => guest.db.clear());
    const summary = await runToEnd(
      { targets: [{ vm: 'db1', app: 'db', ratePerS: 500, keys: 50, mix: { GET: 9, PUT: 1 } }], durationMs: 10_000 },
      clock,
      guest.send,
    );
    const t = summary.targets[0]!;
    expect(t.integrity.failed).toBeGreaterThan(10);
    expect(t.errors[ErrorCode.IO]).toBe(t.integrity.failed);
  });

  it('file: a DOWNLOAD digest other than the upload reported is a VMSIM_ERR_IO error', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock);
    let corrupted = 0;
    // One download in ten comes back with other content.
    const send: Send = async (vm, req) => {
      const r: IngressReply = await guest.send(vm, req);
      if (req.app === 'file' && req.op === 'DOWNLOAD' && r.ok && r.status === 200 && guest.received % 10 === 0) {
        corrupted++;
        return { ...r, digest: 'deadbeef' };
      }
      return r;
    };
    const summary = await runToEnd(
      { targets: [{ vm: 'f1', app: 'file', ratePerS: 200, files: 50 }], durationMs: 10_000 },
      clock,
      send,
    );
    const t = summary.targets[0]!;
    expect(corrupted).toBeGreaterThan(50);
    expect(t.integrity.failed).toBe(corrupted);
    expect(t.errors).toEqual({ [ErrorCode.IO]: corrupted });
    expect(t.integrity.checked).toBe(t.byOp['DOWNLOAD']);
  });

  it('file: no false alarm when uploads and downloads of a name overlap', async () => {
    const clock = new SteppedClock();
    const rng = createRng('files');
    const guest = new FakeGuest(clock, { delayMs: () => 1 + rng.next() * 100, applyAt: () => rng.next() });
    const summary = await runToEnd(
      {
        targets: [{ vm: 'f1', app: 'file', ratePerS: 500, files: 3, mix: { UPLOAD: 1, DOWNLOAD: 1 } }],
        durationMs: 5_000,
      },
      clock,
      guest.send,
    );
    const t = summary.targets[0]!;
    expect(t.integrity.failed).toBe(0);
    expect(t.integrity.checked).toBeGreaterThan(500);
  });
});
