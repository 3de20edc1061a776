import { describe, expect, it } from 'vitest';
import {
  APP_KINDS,
  createRng,
  IngressRequest,
  type AppKind,
  type DbRequest,
  type FileRequest,
  type GameRequest,
  type MailRequest,
} from '@vmsim/shared';
import { DEFAULT_MIX, FILE_BYTES, fnv1a32, hex, MIX_OPS, Zipf, type AppOptions } from './apps.ts';
import type { Send, TargetSpec } from './load.ts';
import { FakeGuest } from './testing/fake-guest.ts';
import { recording, runToEnd } from './testing/run.ts';
import { SteppedClock } from './testing/stepped-clock.ts';

const share = (byOp: Record<string, number>, op: string): number =>
  (byOp[op] ?? 0) / Object.values(byOp).reduce((a, b) => a + b, 0);

/** Options that keep warm-up short (ids and files to read exist sooner). */
const SMALL: Partial<Record<AppKind, AppOptions>> = { mail: { mailboxes: 10 }, file: { files: 20 } };

describe('requests per app', () => {
  it.each(APP_KINDS.flatMap((app) => [[app, 'open'] as const, [app, 'closed'] as const]))(
    'every %s request (%s model) is valid, accepted, and the default mix is kept',
    async (app, model) => {
      const clock = new SteppedClock();
      const guest = new FakeGuest(clock, { delayMs: () => 5 });
      const { send, sent } = recording(guest.send);
      const target: TargetSpec =
        model === 'open'
          ? { vm: 'vm1', app, ratePerS: 500, ...SMALL[app] }
          : { model: 'closed', vm: 'vm1', app, users: 5, thinkMs: 5, ...SMALL[app] };
      const summary = await runToEnd({ targets: [target], durationMs: 10_000 }, clock, send);
      const t = summary.targets[0]!;
      // Checked in bulk: one expect per request would dominate the run time.
      expect(sent.filter((r) => !IngressRequest.safeParse(r).success)).toEqual([]);
      expect(guest.invalid).toEqual([]);
      expect(guest.refused).toEqual([]);
      expect(t.errors).toEqual({});
      expect(t.ok).toBe(t.sent);
      expect(t.sent).toBeGreaterThan(4_500);
      expect(t.bytesSent).toBe(sent.reduce((a, r) => a + r.bytes, 0));
      expect(sent.every((r) => r.app === app)).toBe(true);
      // ~5 000 draws: a share's σ is under 0.007.
      const mix = DEFAULT_MIX[app];
      const weight = (op: string): number => (mix[op] ?? 0) / MIX_OPS[app].reduce((a, o) => a + (mix[o] ?? 0), 0);
      const near = (op: string, want: number, tol = 0.03): void =>
        expect(Math.abs(share(t.byOp, op) - want), `${op} share`).toBeLessThan(tol);
      switch (app) {
        case 'web':
        case 'db':
          for (const op of MIX_OPS[app]) near(op, weight(op));
          break;
        case 'mail':
          // A FETCH becomes a LIST while its mailbox has no acknowledged message.
          near('SUBMIT', weight('SUBMIT'));
          near('FETCH', weight('FETCH'), 0.04);
          expect(t.byOp['FETCH']! + t.byOp['LIST']!).toBe(t.sent - t.byOp['SUBMIT']!);
          break;
        case 'file':
          // Only the first requests, before any upload is acked, turn DOWNLOADs into UPLOADs.
          for (const op of MIX_OPS.file) near(op, weight(op));
          expect(t.integrity.checked).toBeGreaterThan(2_500);
          expect(t.integrity.failed).toBe(0);
          break;
        case 'game':
          // One JOIN per player, then inputs only.
          expect(t.byOp['JOIN']).toBe(model === 'open' ? 16 : 5);
          expect(t.byOp['LEAVE']).toBe(0);
          break;
      }
    },
  );

  it('keeps a given mix, zero weights included', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock);
    const summary = await runToEnd(
      { targets: [{ vm: 'db1', app: 'db', ratePerS: 1000, mix: { GET: 1, PUT: 3 } }], durationMs: 5_000 },
      clock,
      guest.send,
    );
    const { byOp } = summary.targets[0]!;
    expect(byOp['SCAN']).toBe(0);
    expect(Math.abs(share(byOp, 'PUT') - 0.75)).toBeLessThan(0.025);
  });

  it('db: Zipf-skewed keys of a fixed key space, real values of 100 B-4 KiB, scans of 10-100', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock);
    const { send, sent } = recording(guest.send);
    await runToEnd({ targets: [{ vm: 'db1', app: 'db', ratePerS: 1_000 }], durationMs: 20_000 }, clock, send);
    const reqs = sent as DbRequest[];
    expect(reqs.every((r) => /^user:\d{6}$/.test(r.key) && Number(r.key.slice(5)) < 10_000)).toBe(true);
    // Rank 0 gets 1 / H(10 000, 0.99) ≈ 9.4 % of the draws.
    let h = 0;
    for (let i = 1; i <= 10_000; i++) h += 1 / i ** 0.99;
    const top = reqs.filter((r) => r.key === 'user:000000').length / reqs.length;
    expect(Math.abs(top - 1 / h)).toBeLessThan(0.01);
    const puts = reqs.filter((r) => r.op === 'PUT');
    const sizes = puts.map((r) => r.value!.length).sort((a, b) => a - b);
    expect(sizes[0]).toBeGreaterThanOrEqual(100);
    expect(sizes.at(-1)).toBeLessThanOrEqual(4096);
    // Log-uniform: the median is near the geometric mean, 640 B.
    expect(sizes[sizes.length >> 1]).toBeGreaterThan(500);
    expect(sizes[sizes.length >> 1]).toBeLessThan(800);
    expect(puts.every((r) => r.bytes > r.key.length + r.value!.length)).toBe(true);
    const bytes = puts.flatMap((r) => [...r.value!.subarray(0, 64)]);
    expect(Math.abs(bytes.reduce((a, b) => a + b, 0) / bytes.length - 127.5)).toBeLessThan(2);
    const scans = reqs.filter((r) => r.op === 'SCAN');
    expect(scans.every((r) => r.limit! >= 10 && r.limit! <= 100)).toBe(true);
    expect(new Set(scans.map((r) => r.limit)).size).toBe(91);
  });

  it('mail: bodies of 1-64 KiB, mostly small, and FETCH only of acknowledged ids', async () => {
    const clock = new SteppedClock();
    // SUBMITs take 500 ms to be acknowledged: until then no FETCH may be sent.
    const guest = new FakeGuest(clock, { delayMs: (_i, r) => (r.op === 'SUBMIT' ? 500 : 5) });
    const acked = new Map<string, Set<number>>();
    const early: string[] = [];
    const send: Send = async (vm, req) => {
      const m = req as MailRequest;
      if (m.op === 'FETCH' && !acked.get(m.mailbox)?.has(m.id!)) early.push(`${m.mailbox}/${m.id}`);
      const r = await guest.send(vm, req);
      if (m.op === 'SUBMIT' && r.ok) {
        const box = acked.get(m.mailbox) ?? new Set();
        acked.set(m.mailbox, box);
        box.add(Number(r.meta!['id']));
      }
      return r;
    };
    const rec = recording(send);
    const summary = await runToEnd(
      { targets: [{ vm: 'mail1', app: 'mail', ratePerS: 300, mailboxes: 20 }], durationMs: 20_000 },
      clock,
      rec.send,
    );
    const t = summary.targets[0]!;
    expect(early).toEqual([]);
    expect(guest.refused).toEqual([]);
    expect(t.byOp['FETCH']).toBeGreaterThan(2_000);
    const reqs = rec.sent as MailRequest[];
    const firstFetch = reqs.findIndex((r) => r.op === 'FETCH');
    // ~300/s: nothing is acknowledged before 500 ms, so the first ~150 requests hold no FETCH.
    expect(firstFetch).toBeGreaterThan(100);
    const sizes = reqs
      .filter((r) => r.op === 'SUBMIT')
      .map((r) => r.body!.length)
      .sort((a, b) => a - b);
    expect(sizes[0]).toBeGreaterThanOrEqual(1024);
    expect(sizes.at(-1)).toBeLessThanOrEqual(64 * 1024);
    // Log-uniform over 1-64 KiB: median 8 KiB, a quarter under ~2.8 KiB.
    expect(sizes[sizes.length >> 1]).toBeGreaterThan(6 * 1024);
    expect(sizes[sizes.length >> 1]).toBeLessThan(10 * 1024);
    expect(reqs.every((r) => r.op !== 'SUBMIT' || r.bytes > r.body!.length)).toBe(true);
  });

  it('file: heavy-tailed sizes over 1 KiB-16 MiB with seeds; DOWNLOAD only of uploaded names', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock, { delayMs: () => 50 });
    const uploaded = new Set<string>();
    const strays: string[] = [];
    const send: Send = async (vm, req) => {
      const f = req as FileRequest;
      if (f.op === 'DOWNLOAD' && !uploaded.has(f.name)) strays.push(f.name);
      const r = await guest.send(vm, req);
      if (f.op === 'UPLOAD' && r.ok) uploaded.add(f.name);
      return r;
    };
    const rec = recording(send);
    // Downloads only: the generator still has to upload first.
    await runToEnd(
      { targets: [{ vm: 'f1', app: 'file', ratePerS: 20, mix: { DOWNLOAD: 1 } }], durationMs: 10_000 },
      clock,
      rec.send,
    );
    expect(strays).toEqual([]);
    const reqs = rec.sent as FileRequest[];
    expect(reqs[0]!.op).toBe('UPLOAD');
    // Uploads until the first ack comes back (50 ms at 20/s: one or two), downloads after.
    expect(reqs.filter((r) => r.op === 'UPLOAD').length).toBeLessThan(5);

    const clock2 = new SteppedClock();
    const rec2 = recording(new FakeGuest(clock2).send);
    await runToEnd(
      { targets: [{ vm: 'f1', app: 'file', ratePerS: 1_000, mix: { UPLOAD: 1 } }], durationMs: 10_000 },
      clock2,
      rec2.send,
    );
    const ups = rec2.sent as FileRequest[];
    const sizes = ups.map((r) => r.size!).sort((a, b) => a - b);
    expect(sizes[0]).toBeGreaterThanOrEqual(FILE_BYTES.min);
    expect(sizes.at(-1)).toBeLessThanOrEqual(FILE_BYTES.max);
    // Log-uniform: median √(1 KiB × 16 MiB) = 128 KiB; P(> 1 MiB) = ln 16 / ln 16384 ≈ 0.286.
    expect(sizes[sizes.length >> 1]).toBeGreaterThan(100 * 1024);
    expect(sizes[sizes.length >> 1]).toBeLessThan(160 * 1024);
    expect(Math.abs(sizes.filter((s) => s > 1024 * 1024).length / sizes.length - 0.286)).toBeLessThan(0.02);
    expect(new Set(ups.map((r) => r.seed)).size).toBeGreaterThan(ups.length * 0.99);
    expect(ups.every((r) => r.bytes > r.size! && /^file-\d{4}\.bin$/.test(r.name))).toBe(true);
  });

  it('game: each player JOINs first, then inputs of 64-200 B with increasing seq', async () => {
    const clock = new SteppedClock();
    const guest = new FakeGuest(clock, { delayMs: () => 30 });
    const rec = recording(guest.send);
    await runToEnd(
      {
        targets: [
          { model: 'closed', vm: 'g1', app: 'game', users: 12, thinkMs: 50, mix: { INPUT: 20, LEAVE: 1 } },
          { vm: 'g1', app: 'game', ratePerS: 200, players: 5 },
        ],
        durationMs: 10_000,
      },
      clock,
      rec.send,
    );
    expect(guest.refused).toEqual([]);
    const reqs = rec.sent as GameRequest[];
    const players = new Set(reqs.map((r) => r.player));
    expect(players.size).toBe(17);
    const bad: string[] = [];
    const last = new Map<string, GameRequest>();
    for (const r of reqs) {
      const prev = last.get(r.player);
      if (!prev && r.op !== 'JOIN') bad.push(`${r.player} ${r.op} first`);
      if (prev?.op === 'LEAVE' && r.op !== 'JOIN') bad.push(`${r.player} ${r.op} after LEAVE`);
      if (prev && r.seq <= prev.seq) bad.push(`${r.player} seq ${r.seq} after ${prev.seq}`);
      if (r.op === 'INPUT' && (r.bytes < 64 || r.bytes > 200)) bad.push(`${r.player} input of ${r.bytes} B`);
      last.set(r.player, r);
    }
    expect(bad).toEqual([]);
    // Players who LEAVE come back with a JOIN.
    expect(reqs.filter((r) => r.op === 'LEAVE').length).toBeGreaterThan(10);
    expect(reqs.filter((r) => r.op === 'JOIN').length).toBeGreaterThan(17);
  });

  it('Zipf ranks follow 1/k^s', () => {
    const z = new Zipf(100, 1);
    const rng = createRng('z');
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < 200_000; i++) counts[z.draw(rng)]!++;
    let h = 0;
    for (let k = 1; k <= 100; k++) h += 1 / k;
    for (const k of [1, 2, 10, 100]) expect(Math.abs(counts[k - 1]! / 200_000 - 1 / k / h)).toBeLessThan(0.004);
    expect(new Zipf(10, 0).draw(createRng('u'))).toBeLessThan(10);
  });

  it('fnv1a32 is FNV-1a', () => {
    expect(hex(fnv1a32(new Uint8Array()))).toBe('811c9dc5');
    expect(hex(fnv1a32(new TextEncoder().encode('a')))).toBe('e40c292c');
    expect(hex(fnv1a32(new TextEncoder().encode('foobar')))).toBe('bf9cf968');
  });
});
