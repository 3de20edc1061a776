import { describe, expect, it } from 'vitest';
import { ErrorCode, MAX_IO_BYTES, VirtualClock, createLogger, type IngressReply } from '@vmsim/shared';
import { FILE_LAYOUT, FileApp, fileBytes } from './file-app.ts';
import { digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import { OS_PROFILES } from './os-profiles.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 256 * MiB;

/** Delegates to a FakeMachine, records I/O sizes, and can hold flushes forever (a hang before a power cut). */
class SpyMachine implements Machine {
  readonly inner: FakeMachine;
  maxIo = 0;
  /** Flushes still allowed to complete; undefined = all. */
  flushesLeft: number | undefined;
  constructor(inner: FakeMachine) {
    this.inner = inner;
  }
  cpu(cycles: number): Promise<void> {
    return this.inner.cpu(cycles);
  }
  read(disk: number, offset: number, length: number): Promise<Uint8Array> {
    this.maxIo = Math.max(this.maxIo, length);
    return this.inner.read(disk, offset, length);
  }
  write(disk: number, offset: number, data: Uint8Array): Promise<void> {
    this.maxIo = Math.max(this.maxIo, data.length);
    return this.inner.write(disk, offset, data);
  }
  flush(disk: number): Promise<void> {
    if (this.flushesLeft !== undefined) {
      if (this.flushesLeft === 0) return new Promise(() => {});
      this.flushesLeft--;
    }
    return this.inner.flush(disk);
  }
}

function newApp(machine: Machine, diskBytes = DISK): FileApp {
  return new FileApp({
    machine,
    os: OS_PROFILES.linux,
    clock: new VirtualClock(),
    logger: createLogger({ svc: 'test', host: 't', level: 'silent' }),
    disk: 0,
    diskBytes,
  });
}

const upload = (app: FileApp, name: string, size: number, seed: number): Promise<IngressReply> =>
  app.handle({ app: 'file', op: 'UPLOAD', name, size, seed, bytes: size });
const download = (app: FileApp, name: string): Promise<IngressReply> =>
  app.handle({ app: 'file', op: 'DOWNLOAD', name, bytes: 0 });
const expected = (seed: number, size: number): string => hex(digest(fileBytes(seed, 0, size)));
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('fileBytes', () => {
  it('generates any range on its own, deterministically', () => {
    const whole = fileBytes(7, 0, 1000);
    expect(fileBytes(7, 0, 1000)).toEqual(whole);
    for (const [off, len] of [
      [0, 1],
      [1, 2],
      [3, 5],
      [5, 0],
      [13, 987],
      [500, 499],
    ] as const)
      expect(fileBytes(7, off, len)).toEqual(whole.subarray(off, off + len));
    expect(fileBytes(8, 0, 1000)).not.toEqual(whole);
  });

  it('looks random (every byte value, no long runs)', () => {
    const b = fileBytes(1, 0, 64 * KiB);
    const counts = new Array<number>(256).fill(0);
    for (const x of b) counts[x]!++;
    expect(Math.min(...counts)).toBeGreaterThan(150);
    expect(Math.max(...counts)).toBeLessThan(370);
  });
});

describe('FileApp', () => {
  it('downloads what was uploaded, for sizes around block and chunk boundaries', async () => {
    const m = new SpyMachine(new FakeMachine(DISK));
    const app = newApp(m);
    await app.start(true);
    const sizes = [0, 1, 4095, 4096, 300 * KiB, 5 * MiB];
    for (const [i, size] of sizes.entries()) {
      const r = await upload(app, `f${i}`, size, 100 + i);
      expect(r).toMatchObject({ ok: true, status: 201, digest: expected(100 + i, size), meta: { size } });
    }
    for (const [i, size] of sizes.entries()) {
      const r = await download(app, `f${i}`);
      expect(r).toMatchObject({ ok: true, status: 200, bytes: size + 256, digest: expected(100 + i, size) });
    }
    expect(m.maxIo).toBeLessThanOrEqual(MAX_IO_BYTES);
    expect(m.inner.cpuCycles).toBeGreaterThan(3 * 2 * (5 * MiB));
    expect(app.figures()).toEqual({
      files: sizes.length,
      bytesStored: sizes.reduce((a, b) => a + b, 0),
      uploads: sizes.length,
      downloads: sizes.length,
    });
  });

  it('answers 404 for an unknown name and refuses requests of another app kind', async () => {
    const app = newApp(new FakeMachine(DISK));
    await app.start(true);
    expect(await download(app, 'nope')).toMatchObject({ ok: true, status: 404 });
    expect(await app.handle({ app: 'web', op: 'GET', path: '/', bytes: 0 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
    expect(await app.handle({ app: 'file', op: 'UPLOAD', name: 'x', bytes: 0 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
  });

  it('reloads its directory after a restart, reading through the machine', async () => {
    const fake = new FakeMachine(DISK);
    const app = newApp(fake);
    await app.start(true);
    await upload(app, 'a', 70 * KiB, 1);
    await upload(app, 'b', 600 * KiB, 2);
    await upload(app, 'a', 10 * KiB, 3);
    await app.stop();
    fake.powerCut();
    const readsBefore = fake.reads;
    const again = newApp(fake);
    await again.start(false);
    expect(fake.reads).toBeGreaterThan(readsBefore);
    expect(again.figures()).toMatchObject({ files: 2, bytesStored: 610 * KiB, uploads: 0 });
    expect(await download(again, 'a')).toMatchObject({ status: 200, digest: expected(3, 10 * KiB) });
    expect(await download(again, 'b')).toMatchObject({ status: 200, digest: expected(2, 600 * KiB) });
    // The reloaded allocator knows which blocks are taken.
    await upload(again, 'c', 300 * KiB, 4);
    expect(await download(again, 'b')).toMatchObject({ digest: expected(2, 600 * KiB) });
    expect(await download(again, 'c')).toMatchObject({ digest: expected(4, 300 * KiB) });
  });

  it('keeps only fully acknowledged uploads across a power cut', async () => {
    for (const flushesBeforeHang of [0, 1]) {
      const fake = new FakeMachine(DISK);
      const m = new SpyMachine(fake);
      const app = newApp(m);
      await app.start(true);
      expect(await upload(app, 'a', 100 * KiB, 1)).toMatchObject({ status: 201 });
      expect(await upload(app, 'b', 200 * KiB, 2)).toMatchObject({ status: 201 });
      // Hang at the data fsync (0) or at the directory commit's flush (1), then cut the power.
      m.flushesLeft = flushesBeforeHang;
      let answered = false;
      void upload(app, 'a', 400 * KiB, 3).then(() => (answered = true));
      void upload(app, 'new', 50 * KiB, 4).then(() => (answered = true));
      await settle();
      expect(answered).toBe(false);
      expect(fake.writes).toBeGreaterThan(0);
      fake.powerCut();
      const again = newApp(fake);
      await again.start(false);
      expect(again.figures()).toMatchObject({ files: 2, bytesStored: 300 * KiB });
      expect(await download(again, 'a')).toMatchObject({ status: 200, digest: expected(1, 100 * KiB) });
      expect(await download(again, 'b')).toMatchObject({ status: 200, digest: expected(2, 200 * KiB) });
      expect(await download(again, 'new')).toMatchObject({ status: 404 });
    }
  });

  it('refuses an upload that does not fit, and a re-upload frees the old extent', async () => {
    const fake = new FakeMachine(FILE_LAYOUT.dataOffset + 1 * MiB);
    const app = newApp(fake, fake.sizeBytes);
    await app.start(true);
    expect(await upload(app, 'a', 700 * KiB, 1)).toMatchObject({ status: 201 });
    expect(await upload(app, 'b', 400 * KiB, 2)).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
    // A refused upload leaves the old file as it was.
    expect(await upload(app, 'a', 2 * MiB, 9)).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
    expect(await download(app, 'a')).toMatchObject({ digest: expected(1, 700 * KiB) });
    // Same size again fits only because the old extent is freed.
    expect(await upload(app, 'a', 1 * MiB, 3)).toMatchObject({ status: 201 });
    expect(await upload(app, 'a', 300 * KiB, 4)).toMatchObject({ status: 201 });
    expect(await upload(app, 'b', 400 * KiB, 2)).toMatchObject({ status: 201 });
    expect(await download(app, 'a')).toMatchObject({ digest: expected(4, 300 * KiB) });
    expect(await download(app, 'b')).toMatchObject({ digest: expected(2, 400 * KiB) });
    expect(app.figures()).toMatchObject({ files: 2, bytesStored: 700 * KiB });
  });

  it('serves a download racing with an overwrite of the same name from the old blocks', async () => {
    const fake = new FakeMachine(FILE_LAYOUT.dataOffset + 1 * MiB);
    const app = newApp(fake, fake.sizeBytes);
    await app.start(true);
    await upload(app, 'a', 600 * KiB, 1);
    const [down, up] = await Promise.all([download(app, 'a'), upload(app, 'a', 300 * KiB, 2)]);
    expect(down).toMatchObject({ status: 200, digest: expected(1, 600 * KiB) });
    expect(up).toMatchObject({ status: 201 });
    expect(await download(app, 'a')).toMatchObject({ digest: expected(2, 300 * KiB) });
    // An overwrite that would need the blocks being read waits for no one: it is refused.
    const [down2, up2] = await Promise.all([download(app, 'a'), upload(app, 'a', 900 * KiB, 3)]);
    expect(down2).toMatchObject({ status: 200, digest: expected(2, 300 * KiB) });
    expect(up2).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
    expect(await upload(app, 'a', 900 * KiB, 3)).toMatchObject({ status: 201 });
  });

  it('refuses every upload when the disk has no data area', async () => {
    const fake = new FakeMachine(FILE_LAYOUT.dirOffset);
    const app = newApp(fake, fake.sizeBytes);
    await app.start(true);
    expect(await upload(app, 'a', 0, 1)).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
  });
});
