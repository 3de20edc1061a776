import { describe, expect, it } from 'vitest';
import { ErrorCode, VirtualClock, createLogger, type GameRequest, type IngressReply } from '@vmsim/shared';
import { GAME_COSTS, GameApp, type GameOptions } from './game-app.ts';
import type { Machine } from './hypercalls.ts';
import { OS_PROFILES } from './os-profiles.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const DISK = 256 * 1024 * 1024;
const OS = OS_PROFILES.linux;
const SYS = OS.syscallCycles;
const TICK = GAME_COSTS.tickCycles + GAME_COSTS.tickSyscalls * SYS;
const PER_PLAYER = GAME_COSTS.playerCycles + GAME_COSTS.playerSyscalls * SYS;
const JOIN = GAME_COSTS.joinCycles + GAME_COSTS.inputSyscalls * SYS;
const INPUT = GAME_COSTS.inputCycles + GAME_COSTS.inputSyscalls * SYS;

/**
 * A FakeMachine whose CPU takes virtual time: cpu(cycles) completes cycles/mhz µs later on
 * the clock (instantly when mhz is Infinity). Records when each burst was issued.
 */
class TimedMachine implements Machine {
  readonly inner: FakeMachine;
  readonly cpuAt: number[] = [];
  /** Instant until a test sets it (after start(), whose install save would otherwise wait). */
  mhz = Infinity;
  private readonly clock: VirtualClock;
  constructor(clock: VirtualClock, inner = new FakeMachine(DISK)) {
    this.clock = clock;
    this.inner = inner;
  }
  async cpu(cycles: number): Promise<void> {
    this.cpuAt.push(this.clock.now());
    if (Number.isFinite(this.mhz))
      await new Promise<void>((r) => this.clock.at(this.clock.now() + cycles / (this.mhz * 1000), r));
    await this.inner.cpu(cycles);
  }
  read(disk: number, offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(disk, offset, length);
  }
  write(disk: number, offset: number, data: Uint8Array): Promise<void> {
    return this.inner.write(disk, offset, data);
  }
  flush(disk: number): Promise<void> {
    return this.inner.flush(disk);
  }
}

/** Lets every pending promise continuation run (setImmediate runs after all microtasks). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Advances virtual time event by event up to untilMs, letting continuations run in between. */
async function runUntil(clock: VirtualClock, untilMs: number): Promise<void> {
  let done = false;
  clock.at(untilMs, () => (done = true));
  await settle();
  while (!done) {
    clock.runAll(1);
    await settle();
  }
}

function newGame(clock: VirtualClock, machine: Machine, options: Partial<GameOptions> = {}): GameApp {
  const ctx = {
    machine,
    os: OS,
    clock,
    logger: createLogger({ svc: 'test', host: 't', level: 'silent' }),
    disk: 0,
    diskBytes: DISK,
  };
  return new GameApp(ctx, options);
}

interface Sent {
  reply?: IngressReply;
  atMs?: number;
}

/** Sends a request at atMs; the result records the reply and when it arrived. */
function sendAt(clock: VirtualClock, app: GameApp, atMs: number, op: GameRequest['op'], player: string, seq = 0): Sent {
  const sent: Sent = {};
  clock.at(atMs, () => {
    void app.handle({ app: 'game', op, player, seq, bytes: 32 }).then((r) => {
      sent.reply = r;
      sent.atMs = clock.now();
    });
  });
  return sent;
}

describe('GameApp', () => {
  it('ticks exactly on the period when the machine is instant', async () => {
    const clock = new VirtualClock();
    const m = new TimedMachine(clock);
    const app = newGame(clock, m);
    await app.start(true);
    const before = m.cpuAt.length;
    await runUntil(clock, 1000);
    expect(m.cpuAt.slice(before)).toEqual(Array.from({ length: 20 }, (_, i) => i * 50));
    expect(app.figures()).toMatchObject({ ticks: 20, tickLateP99Ms: 0, tickLateMaxMs: 0, overruns: 0 });
  });

  it('acknowledges each request at the end of the tick that processed it', async () => {
    const clock = new VirtualClock();
    const mhz = 1000;
    const m = new TimedMachine(clock);
    const app = newGame(clock, m);
    await app.start(true);
    m.mhz = mhz;
    clock.runUntil(5); // past the install save
    const join = sendAt(clock, app, 10, 'JOIN', 'p1');
    // Sent while tick 2 runs: it waits for tick 3.
    const input = sendAt(clock, app, 51, 'INPUT', 'p1', 1);
    const stranger = sendAt(clock, app, 60, 'INPUT', 'p2', 1);
    const leave = sendAt(clock, app, 120, 'LEAVE', 'p1', 2);
    await runUntil(clock, 149);
    expect(app.figures()).toMatchObject({ players: 1, inputs: 1 });
    await runUntil(clock, 300);

    expect(join.reply).toMatchObject({ ok: true, status: 200, meta: { tick: 2, restored: 0 } });
    expect(join.atMs).toBeCloseTo(50 + (TICK + JOIN + PER_PLAYER) / (mhz * 1000), 9);
    expect(input.reply).toMatchObject({ ok: true, status: 200, meta: { tick: 3 } });
    expect(input.atMs).toBeCloseTo(100 + (TICK + 2 * INPUT + PER_PLAYER) / (mhz * 1000), 9);
    expect(stranger.reply).toMatchObject({ ok: true, status: 404, meta: { tick: 3 } });
    expect(leave.reply).toMatchObject({ ok: true, status: 200, meta: { tick: 4 } });
    expect(app.figures()).toMatchObject({ players: 0, inputs: 1, overruns: 0, tickLateMaxMs: 0 });
  });

  it('starts the next tick late after an overrun, then returns to the grid without catching up', async () => {
    const clock = new VirtualClock();
    const mhz = 100;
    const m = new TimedMachine(clock);
    const app = newGame(clock, m);
    await app.start(true);
    m.mhz = mhz;
    const first = m.cpuAt.length;
    const joins = Array.from({ length: 10 }, (_, i) => sendAt(clock, app, 10, 'JOIN', `p${i}`));
    await runUntil(clock, 1000);

    // Tick 2 (at 50) admits ten players: far longer than a period.
    const slowEnd = 50 + (TICK + 10 * JOIN + 10 * PER_PLAYER) / (mhz * 1000);
    expect(slowEnd).toBeGreaterThan(150);
    for (const j of joins) {
      expect(j.reply).toMatchObject({ ok: true, meta: { tick: 2 } });
      expect(j.atMs).toBeCloseTo(slowEnd, 9);
    }
    const starts = m.cpuAt.slice(first);
    expect(starts.slice(0, 3)).toEqual([0, 50, slowEnd]);
    const backOnGrid = Math.floor(slowEnd / 50) * 50 + 50;
    expect(starts.slice(3)).toEqual(Array.from({ length: (1000 - backOnGrid) / 50 }, (_, i) => backOnGrid + i * 50));
    const f = app.figures();
    expect(f['overruns']).toBe(1);
    expect(f['skippedTicks']).toBe(Math.floor(slowEnd / 50) - 2);
    expect(f['tickLateMaxMs']).toBeCloseTo(slowEnd - 100, 9);
    expect(f['players']).toBe(10);
  });

  it('runs ticks back to back and counts overruns when every tick is longer than the period', async () => {
    const clock = new VirtualClock();
    const mhz = 10;
    const m = new TimedMachine(clock);
    const app = newGame(clock, m);
    await app.start(true);
    m.mhz = mhz;
    const first = m.cpuAt.length;
    await runUntil(clock, 2000);
    const duration = TICK / (mhz * 1000);
    expect(duration).toBeGreaterThan(50);
    const starts = m.cpuAt.slice(first);
    expect(starts.length).toBe(Math.ceil(2000 / duration));
    // No tick starts before the previous one ended: overruns are not queued up.
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeCloseTo(duration, 9);
    const f = app.figures();
    // The last tick has started and not yet ended.
    expect(f['overruns']).toBe(f['ticks']! - 1);
    expect(f['skippedTicks']).toBeGreaterThan(0);
    expect(f['tickLateP99Ms']).toBeGreaterThan(0);
    expect(f['tickLateMaxMs']).toBeGreaterThan(0);
    expect(f['tickLateMaxMs']).toBeLessThanOrEqual(duration);
  });

  it('stop() lets the running tick finish, refuses what is queued, and ends the loop', async () => {
    const clock = new VirtualClock();
    const m = new TimedMachine(clock);
    const app = newGame(clock, m);
    await app.start(true);
    m.mhz = 100;
    const join = sendAt(clock, app, 40, 'JOIN', 'p1');
    const queued = sendAt(clock, app, 55, 'INPUT', 'p1', 1);
    await runUntil(clock, 60);
    let stopped = false;
    void app.stop().then(() => (stopped = true));
    expect(await app.handle({ app: 'game', op: 'INPUT', player: 'p1', seq: 2, bytes: 32 })).toMatchObject({
      ok: false,
      code: ErrorCode.VM_NOT_RUNNING,
    });
    await runUntil(clock, 200);
    expect(stopped).toBe(true);
    expect(join.reply).toMatchObject({ ok: true, status: 200, meta: { tick: 2 } });
    expect(queued.reply).toMatchObject({ ok: false, code: ErrorCode.VM_NOT_RUNNING });
    expect(m.inner.flushes).toBe(1);
    const calls = m.inner.cpuCalls;
    const ticks = app.figures()['ticks'];
    await runUntil(clock, 2000);
    expect(m.inner.cpuCalls).toBe(calls);
    expect(app.figures()['ticks']).toBe(ticks);
    expect(clock.pending).toBe(0);
  });

  it('saves player state every N ticks without flushing, and restores it after a restart', async () => {
    const clock = new VirtualClock();
    const m = new TimedMachine(clock);
    const app = newGame(clock, m, { saveEveryTicks: 10 });
    await app.start(true);
    sendAt(clock, app, 10, 'JOIN', 'alice');
    sendAt(clock, app, 60, 'INPUT', 'alice', 1);
    await runUntil(clock, 449); // ticks 1..9
    const writes = m.inner.writes;
    await runUntil(clock, 460); // tick 10 saves
    expect(m.inner.writes).toBe(writes + 1);
    expect(m.inner.flushes).toBe(0);

    // A crash (this clock never runs again) and a power cut lose unflushed saves.
    m.inner.powerCut();
    const clock2 = new VirtualClock();
    const m2 = new TimedMachine(clock2, m.inner);
    const lost = newGame(clock2, m2);
    await lost.start(false);
    const fresh = sendAt(clock2, lost, 1, 'JOIN', 'alice');
    await runUntil(clock2, 100);
    expect(fresh.reply).toMatchObject({ ok: true, meta: { restored: 0 } });
    const stopping = lost.stop();
    await runUntil(clock2, 200);
    await stopping;

    // stop() saves and flushes: the next start knows the player.
    m.inner.powerCut();
    const clock3 = new VirtualClock();
    const again = newGame(clock3, new TimedMachine(clock3, m.inner));
    await again.start(false);
    const back = sendAt(clock3, again, 1, 'JOIN', 'alice');
    await runUntil(clock3, 100);
    expect(back.reply).toMatchObject({ ok: true, meta: { restored: 1 } });
  });

  it('refuses requests of another app kind, before start, and beyond the player limit', async () => {
    const clock = new VirtualClock();
    const app = newGame(clock, new TimedMachine(clock), { maxPlayers: 1 });
    expect(await app.handle({ app: 'file', op: 'DOWNLOAD', name: 'x', bytes: 0 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
    expect(await app.handle({ app: 'game', op: 'JOIN', player: 'a', seq: 0, bytes: 0 })).toMatchObject({
      ok: false,
      code: ErrorCode.VM_NOT_RUNNING,
    });
    await app.start(true);
    const a = sendAt(clock, app, 10, 'JOIN', 'a');
    const b = sendAt(clock, app, 10, 'JOIN', 'b');
    await runUntil(clock, 100);
    expect(a.reply).toMatchObject({ ok: true, status: 200 });
    expect(b.reply).toMatchObject({ ok: false, code: ErrorCode.OVERLOAD });
  });
});
