import type { Clock, GameRequest, IngressReply, IngressRequest, Logger, TimerHandle } from '@vmsim/shared';
import { ErrorCode, errorReply, toVmsimError } from '@vmsim/shared';
import { APP_DATA_OFFSET } from './disk-layout.ts';
import type { AppContext, ServerApp } from './app.ts';
import { BLOCK, blockAlign, readTable, sealChecksum, wrongApp, writeChunked } from './app-storage.ts';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

const MiB = 1024 * 1024;

/** The save slot: rewritten in place every few seconds; a torn one fails its checksum. */
export const GAME_LAYOUT = {
  saveOffset: APP_DATA_OFFSET,
  saveBytes: 1 * MiB,
} as const;

/**
 * Costs, of the order of dedicated game servers (Source, Unreal, Minecraft-like) on a
 * 2-3 GHz core: a server frame runs 20-128 Hz; its fixed part (world, AI, net loop) is
 * ≈ 0.1-1 ms, each player adds tens of µs (movement and physics, interest management,
 * snapshot delta) and a send; one input takes a few µs to decode and apply; a join
 * (authentication, spawn, initial snapshot) ≈ 1 ms.
 */
export const GAME_COSTS = {
  tickCycles: 1_000_000,
  /** epoll_wait, clock_gettime and the timer each frame. */
  tickSyscalls: 4,
  playerCycles: 80_000,
  /** One sendto per player per frame. */
  playerSyscalls: 1,
  inputCycles: 15_000,
  /** One recvfrom per request. */
  inputSyscalls: 1,
  joinCycles: 3_000_000,
  leaveCycles: 300_000,
  saveCycles: 100_000,
  saveCyclesPerPlayer: 5_000,
  saveSyscalls: 2,
  /** An acknowledgement datagram. */
  ackBytes: 64,
} as const;

export interface GameOptions {
  tickHz: number;
  /** Ticks between saves of the player state (no flush: a crash loses at most this much). */
  saveEveryTicks: number;
  /** Ticks the lateness percentile is computed over. */
  lateWindow: number;
  maxPlayers: number;
}

export const GAME_DEFAULTS: GameOptions = { tickHz: 20, saveEveryTicks: 100, lateWindow: 200, maxPlayers: 64 };

const SAVE_MAGIC = 0x56475331; // 'VGS1'
const SAVE_VERSION = 1;
const SAVE_HEADER_BYTES = 24;
/** u16 name length, f64 last sequence number, f64 inputs (the name's bytes follow the length). */
const RECORD_FIXED_BYTES = 2 + 8 + 8;
/** Profiles kept (online or not); with 128-character names this still fits the save slot. */
const MAX_PROFILES = 1024;

interface Player {
  name: string;
  nameBytes: Uint8Array;
  online: boolean;
  lastSeq: number;
  inputs: number;
}

interface Pending {
  req: GameRequest;
  resolve: (reply: IngressReply) => void;
}

function encodeSave(players: Iterable<Player>): Uint8Array {
  const list = [...players];
  let bodyLen = 0;
  for (const p of list) bodyLen += RECORD_FIXED_BYTES + p.nameBytes.length;
  const buf = new Uint8Array(Math.max(BLOCK, blockAlign(SAVE_HEADER_BYTES + bodyLen)));
  const dv = new DataView(buf.buffer);
  let at = SAVE_HEADER_BYTES;
  for (const p of list) {
    dv.setUint16(at, p.nameBytes.length, true);
    buf.set(p.nameBytes, at + 2);
    at += 2 + p.nameBytes.length;
    dv.setFloat64(at, p.lastSeq, true);
    dv.setFloat64(at + 8, p.inputs, true);
    at += 16;
  }
  dv.setUint32(0, SAVE_MAGIC, true);
  dv.setUint32(4, SAVE_VERSION, true);
  dv.setUint32(8, list.length, true);
  dv.setUint32(12, bodyLen, true);
  dv.setUint32(16, sealChecksum(buf, 16, SAVE_HEADER_BYTES, SAVE_HEADER_BYTES + bodyLen), true);
  return buf;
}

function saveBytes(head: Uint8Array): number | undefined {
  const dv = new DataView(head.buffer, head.byteOffset, head.length);
  if (head.length < SAVE_HEADER_BYTES || dv.getUint32(0, true) !== SAVE_MAGIC) return undefined;
  if (dv.getUint32(4, true) !== SAVE_VERSION) return undefined;
  const total = SAVE_HEADER_BYTES + dv.getUint32(12, true);
  return total <= GAME_LAYOUT.saveBytes ? total : undefined;
}

function decodeSave(buf: Uint8Array): Player[] | undefined {
  const total = saveBytes(buf);
  if (total === undefined || total > buf.length) return undefined;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  if (dv.getUint32(16, true) !== sealChecksum(buf, 16, SAVE_HEADER_BYTES, total)) return undefined;
  const dec = new TextDecoder();
  const players: Player[] = [];
  let at = SAVE_HEADER_BYTES;
  for (let i = dv.getUint32(8, true); i > 0; i--) {
    const n = at + 2 <= total ? dv.getUint16(at, true) : Infinity;
    if (at + RECORD_FIXED_BYTES + n > total) return undefined;
    const nameBytes = buf.slice(at + 2, at + 2 + n);
    at += 2 + n;
    players.push({
      name: dec.decode(nameBytes),
      nameBytes,
      online: false,
      lastSeq: dv.getFloat64(at, true),
      inputs: dv.getFloat64(at + 8, true),
    });
    at += 16;
  }
  return players;
}

/**
 * A game server with a fixed tick loop on the injected clock. Tick n is due at
 * start + n·period (no drift); requests queue until the next tick processes them and are
 * acknowledged when that tick ends, so a client's latency is input-to-acknowledgement.
 * A tick that overruns its period makes the next one start late, right away; slots missed
 * meanwhile are skipped, never run back to back.
 */
export class GameApp implements ServerApp {
  readonly footprintMiB = 512;
  private readonly m: Machine;
  private readonly os: OsProfile;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly disk: number;
  private readonly hasSaveArea: boolean;
  private readonly opts: GameOptions;
  private readonly periodMs: number;
  /** Profiles, least recently joined first (the order evictions go by). */
  private readonly players = new Map<string, Player>();
  private online = 0;
  private queue: Pending[] = [];
  private running = false;
  private timer: TimerHandle | undefined;
  private epoch = 0;
  private tickNo = 0;
  private current: Promise<void> | undefined;
  private saving: Promise<void> | undefined;
  private readonly late: Float64Array;
  private lateCount = 0;
  private lateMax = 0;
  private overruns = 0;
  private skipped = 0;
  private inputs = 0;

  constructor(ctx: AppContext, options: Partial<GameOptions> = {}) {
    this.m = ctx.machine;
    this.os = ctx.os;
    this.clock = ctx.clock;
    this.logger = ctx.logger;
    this.disk = ctx.disk;
    this.hasSaveArea = ctx.diskBytes >= GAME_LAYOUT.saveOffset + GAME_LAYOUT.saveBytes;
    this.opts = { ...GAME_DEFAULTS, ...options };
    if (!(this.opts.tickHz > 0)) throw new RangeError(`tickHz must be > 0, got ${this.opts.tickHz}`);
    if (!(this.opts.saveEveryTicks >= 1)) throw new RangeError(`saveEveryTicks must be ≥ 1`);
    this.periodMs = 1000 / this.opts.tickHz;
    this.late = new Float64Array(Math.max(1, Math.floor(this.opts.lateWindow)));
  }

  async start(fresh: boolean): Promise<void> {
    if (this.running) return;
    if (this.hasSaveArea) {
      if (fresh) await this.save();
      else await this.load();
    } else {
      this.logger.warn('disk too small for a save slot: player state is not saved');
    }
    this.running = true;
    this.epoch = this.clock.now();
    this.arm(0, this.epoch, this.epoch);
  }

  /**
   * Ends the loop: the tick in progress finishes and acknowledges what it processed,
   * requests still queued are refused, and the player state is saved and flushed.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) this.clock.cancel(this.timer);
    this.timer = undefined;
    await this.current;
    for (const p of this.queue.splice(0))
      p.resolve(errorReply(ErrorCode.VM_NOT_RUNNING, 'the game server stopped before this request was processed'));
    await this.saving;
    if (this.hasSaveArea) {
      await this.save();
      await this.m.flush(this.disk);
    }
  }

  figures(): Record<string, number> {
    const window = [...this.late.subarray(0, Math.min(this.lateCount, this.late.length))].sort((a, b) => a - b);
    const p99 = window.length > 0 ? window[Math.ceil(window.length * 0.99) - 1]! : 0;
    return {
      players: this.online,
      ticks: this.tickNo,
      tickLateP99Ms: p99,
      tickLateMaxMs: this.lateMax,
      overruns: this.overruns,
      skippedTicks: this.skipped,
      inputs: this.inputs,
    };
  }

  handle(req: IngressRequest): Promise<IngressReply> {
    if (req.app !== 'game') return Promise.resolve(wrongApp('a game server', req.app));
    if (!this.running) return Promise.resolve(errorReply(ErrorCode.VM_NOT_RUNNING, 'the game server is not running'));
    return new Promise((resolve) => this.queue.push({ req, resolve }));
  }

  /** Arms the tick of grid slot `slot` to run at `atMs`; its lateness is measured from `dueMs`. */
  private arm(slot: number, dueMs: number, atMs: number): void {
    this.timer = this.clock.at(atMs, () => {
      this.timer = undefined;
      const run = this.tick(slot, dueMs);
      this.current = run;
      void run.then(() => {
        if (this.current === run) this.current = undefined;
      });
    });
  }

  private async tick(slot: number, dueMs: number): Promise<void> {
    const lateMs = Math.max(0, this.clock.now() - dueMs);
    this.late[this.lateCount++ % this.late.length] = lateMs;
    this.lateMax = Math.max(this.lateMax, lateMs);
    const tick = ++this.tickNo;
    const batch = this.queue.splice(0);
    const sys = this.os.syscallCycles;
    let cycles = GAME_COSTS.tickCycles + GAME_COSTS.tickSyscalls * sys;
    const replies = batch.map((p) => {
      const r = this.apply(p.req, tick);
      cycles += r.cycles;
      return r.reply;
    });
    cycles += this.online * (GAME_COSTS.playerCycles + GAME_COSTS.playerSyscalls * sys);
    const save = this.hasSaveArea && tick % this.opts.saveEveryTicks === 0 && !this.saving;
    if (save) cycles += this.saveCycles();
    try {
      // One burst per tick: the frame is one run of the main loop.
      await this.m.cpu(cycles);
      if (save) this.startSave();
    } catch (e) {
      const ve = toVmsimError(e);
      this.logger.warn({ tick, code: ve.code, err: ve.message }, 'tick failed');
      replies.fill(errorReply(ve.code, ve.message));
    }
    batch.forEach((p, i) => p.resolve(replies[i]!));
    if (!this.running) return;
    const nextSlot = slot + 1;
    const nextDue = this.epoch + nextSlot * this.periodMs;
    const endMs = this.clock.now();
    if (endMs <= nextDue) {
      this.arm(nextSlot, nextDue, nextDue);
      return;
    }
    this.overruns++;
    const behind = Math.max(nextSlot, Math.floor((endMs - this.epoch) / this.periodMs));
    this.skipped += behind - nextSlot;
    this.arm(behind, nextDue, endMs);
  }

  /** Applies one request to the world; its reply waits for the end of the tick. */
  private apply(req: GameRequest, tick: number): { reply: IngressReply; cycles: number } {
    const recv = GAME_COSTS.inputSyscalls * this.os.syscallCycles;
    const ack = (status: number, extra: Record<string, number> = {}): IngressReply => ({
      ok: true,
      status,
      bytes: GAME_COSTS.ackBytes,
      meta: { tick, ...extra },
    });
    const p = this.players.get(req.player);
    switch (req.op) {
      case 'JOIN': {
        if (p?.online) return { reply: ack(200, { restored: 0 }), cycles: GAME_COSTS.inputCycles + recv };
        if (this.online >= this.opts.maxPlayers)
          return {
            reply: errorReply(ErrorCode.OVERLOAD, `the server is full (${this.opts.maxPlayers} players)`),
            cycles: GAME_COSTS.inputCycles + recv,
          };
        const player = p ?? {
          name: req.player,
          nameBytes: new TextEncoder().encode(req.player),
          online: false,
          lastSeq: 0,
          inputs: 0,
        };
        player.online = true;
        player.lastSeq = Math.max(player.lastSeq, req.seq);
        this.players.delete(req.player);
        this.players.set(req.player, player);
        this.online++;
        this.evictProfiles();
        return { reply: ack(200, { restored: p ? 1 : 0 }), cycles: GAME_COSTS.joinCycles + recv };
      }
      case 'INPUT': {
        if (!p?.online) return { reply: ack(404), cycles: GAME_COSTS.inputCycles + recv };
        p.inputs++;
        p.lastSeq = Math.max(p.lastSeq, req.seq);
        this.inputs++;
        return { reply: ack(200), cycles: GAME_COSTS.inputCycles + recv };
      }
      case 'LEAVE': {
        if (!p?.online) return { reply: ack(404), cycles: GAME_COSTS.inputCycles + recv };
        p.online = false;
        this.online--;
        return { reply: ack(200), cycles: GAME_COSTS.leaveCycles + recv };
      }
    }
  }

  private evictProfiles(): void {
    for (const [name, p] of this.players) {
      if (this.players.size <= MAX_PROFILES) return;
      if (!p.online) this.players.delete(name);
    }
  }

  private saveCycles(): number {
    return (
      GAME_COSTS.saveCycles +
      GAME_COSTS.saveCyclesPerPlayer * this.players.size +
      GAME_COSTS.saveSyscalls * this.os.syscallCycles
    );
  }

  /** Writes the save in the background (its CPU was part of the tick), one save at a time. */
  private startSave(): void {
    const bytes = encodeSave(this.players.values());
    const run = this.writeSave(bytes).catch((e: unknown) => {
      this.logger.warn({ err: toVmsimError(e).message }, 'saving player state failed');
    });
    this.saving = run;
    void run.then(() => {
      if (this.saving === run) this.saving = undefined;
    });
  }

  private async save(): Promise<void> {
    await this.m.cpu(this.saveCycles());
    await this.writeSave(encodeSave(this.players.values()));
  }

  private writeSave(bytes: Uint8Array): Promise<void> {
    return writeChunked(this.m, this.disk, GAME_LAYOUT.saveOffset, bytes);
  }

  private async load(): Promise<void> {
    const buf = await readTable(this.m, this.disk, GAME_LAYOUT.saveOffset, saveBytes);
    const players = buf && decodeSave(buf);
    if (!players) {
      this.logger.warn('no valid saved player state: starting empty');
      return;
    }
    await this.m.cpu(GAME_COSTS.saveCycles + GAME_COSTS.saveCyclesPerPlayer * players.length);
    for (const p of players) this.players.set(p.name, p);
    this.logger.info({ profiles: players.length }, 'player state loaded');
  }
}
