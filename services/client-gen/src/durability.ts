import { createRng, ErrorCode, VmsimError, type Clock, type IngressReply, type Logger } from '@vmsim/shared';
import { fnv1a32, hex, randomBytes, uniformInt } from './apps.ts';
import type { Send } from './load.ts';

/**
 * The durability check of a db VM: write unique keys whose values follow from a seed,
 * remember exactly which writes the server acknowledged, then read every key back.
 *
 * - acknowledged (an ok reply): must read back with its value, else it is `lost`;
 * - unacknowledged (error reply, timeout, no answer): its outcome is unknown, so it may
 *   read back absent or with its value, never with other bytes (that is `corrupt`).
 *
 * A failed write is retried with the same value (so a retry and a late first attempt never
 * disagree) until acknowledged or `maxAttempts`; retries ride out guest and host restarts.
 */

export const DURABILITY_DEFAULTS = {
  concurrency: 16,
  valueBytes: { min: 64, max: 512 },
  maxAttempts: 40,
  /** Simulated ms before the first retry of a key; doubles up to maxRetryMs. */
  retryMs: 50,
  maxRetryMs: 1_000,
  /** Read-back attempts per key before it counts as unverified. */
  maxReadAttempts: 40,
} as const;

/** Where each key stands. */
export const KeyState = {
  /** Never sent. */
  UNWRITTEN: 0,
  /** Sent, no acknowledgement yet (a write may still be landing). */
  PENDING: 1,
  ACKED: 2,
  /** Every attempt failed: the key may or may not be there. */
  GAVE_UP: 3,
} as const;
export type KeyState = (typeof KeyState)[keyof typeof KeyState];

/** What one read-back found. */
export const ReadVerdict = {
  /** An acknowledged key with its value. */
  KEPT: 'kept',
  /** An acknowledged key missing or with other bytes. */
  LOST: 'lost',
  /** An unacknowledged key with its value (the write landed). */
  LANDED: 'landed',
  /** An unacknowledged key absent (the write was lost: allowed). */
  ABSENT: 'absent',
  /** An unacknowledged key with bytes that were never written. */
  CORRUPT: 'corrupt',
} as const;
export type ReadVerdict = (typeof ReadVerdict)[keyof typeof ReadVerdict];

export interface DurabilityResult {
  vm: string;
  /** Keys written (at least one attempt). */
  written: number;
  /** Keys acknowledged: each must read back. */
  acked: number;
  /** Acknowledged keys missing or wrong after recovery: must be 0. */
  lost: number;
  /** Keys whose every attempt failed. */
  unacked: number;
  /** Of those, how many read back with their value (they landed) and how many were absent. */
  unackedLanded: number;
  unackedAbsent: number;
  /** Keys (acknowledged or not) read back with bytes never written; acknowledged ones count as lost too. */
  corrupt: number;
  /** Keys whose read-back never got an answer. */
  unverified: number;
  /** PUTs sent, and how many failed by error code (timeouts included). */
  attempts: number;
  failedAttempts: Record<string, number>;
  /** Up to 10 lost or corrupt keys, for the report. */
  examples: string[];
}

/**
 * The pure bookkeeping: which key has which value and state, and the verdict of a read.
 * Keys are `<prefix>:<index>`, zero-padded so they sort in write order.
 */
export class DurabilityLedger {
  readonly vm: string;
  readonly prefix: string;
  private readonly seed: string;
  private readonly valueBytes: { min: number; max: number };
  private readonly states: KeyState[] = [];
  private attempts = 0;
  private readonly failedByCode = new Map<string, number>();
  private readonly verdicts = new Map<number, ReadVerdict>();
  private readonly unverifiedKeys = new Set<number>();
  private readonly wrongBytes = new Set<number>();

  constructor(opts: { vm: string; seed: string | number; prefix: string; valueBytes?: { min: number; max: number } }) {
    this.vm = opts.vm;
    this.seed = String(opts.seed);
    this.prefix = opts.prefix;
    this.valueBytes = opts.valueBytes ?? DURABILITY_DEFAULTS.valueBytes;
    if (!(this.valueBytes.min >= 1 && this.valueBytes.max >= this.valueBytes.min && this.valueBytes.max <= 65_536))
      throw new VmsimError(ErrorCode.CONFIG, `valueBytes must be within [1, 65536], min <= max`);
    if (!/^[A-Za-z0-9:/_-]{1,200}$/.test(this.prefix))
      throw new VmsimError(ErrorCode.CONFIG, `key prefix "${this.prefix}" must be 1-200 of A-Z a-z 0-9 : / _ -`);
  }

  /** Keys handed out so far. */
  get size(): number {
    return this.states.length;
  }

  key(i: number): string {
    return `${this.prefix}:${String(i).padStart(8, '0')}`;
  }

  /** The value of key i: a function of the seed and the key alone. */
  value(i: number): Uint8Array<ArrayBuffer> {
    const rng = createRng(`durability/${this.seed}/${this.key(i)}`);
    return randomBytes(rng, uniformInt(rng, this.valueBytes.min, this.valueBytes.max));
  }

  /** Hands out the next key's index. */
  take(): number {
    this.states.push(KeyState.UNWRITTEN);
    return this.states.length - 1;
  }

  state(i: number): KeyState {
    const s = this.states[i];
    if (s === undefined) throw new VmsimError(ErrorCode.OUT_OF_RANGE, `no key ${i}`);
    return s;
  }

  /** The outcome of one PUT attempt of key i. */
  attempt(i: number, reply: IngressReply): void {
    const s = this.state(i);
    this.attempts++;
    if (reply.ok && reply.status === 200) {
      this.states[i] = KeyState.ACKED;
      return;
    }
    const code = reply.ok ? `HTTP_${reply.status}` : reply.code;
    this.failedByCode.set(code, (this.failedByCode.get(code) ?? 0) + 1);
    if (s !== KeyState.ACKED) this.states[i] = KeyState.PENDING;
  }

  /** No more attempts for key i: unacknowledged for good unless one already succeeded. */
  giveUp(i: number): void {
    if (this.state(i) !== KeyState.ACKED) this.states[i] = KeyState.GAVE_UP;
  }

  get acked(): number {
    return this.states.filter((s) => s === KeyState.ACKED).length;
  }

  /** Judges what a GET of key i answered. */
  check(i: number, reply: Extract<IngressReply, { ok: true }>): ReadVerdict {
    const s = this.state(i);
    if (s === KeyState.UNWRITTEN) throw new VmsimError(ErrorCode.BAD_STATE, `key ${i} was never written`);
    const acked = s === KeyState.ACKED;
    const want = this.value(i);
    // Absent (undefined), or the bytes themselves when the reply carries them, else the digest the server computed.
    const same =
      reply.status === 404
        ? undefined
        : reply.data
          ? equalBytes(reply.data, want)
          : reply.digest === hex(fnv1a32(want));
    const verdict = acked
      ? same
        ? ReadVerdict.KEPT
        : ReadVerdict.LOST
      : same === undefined
        ? ReadVerdict.ABSENT
        : same
          ? ReadVerdict.LANDED
          : ReadVerdict.CORRUPT;
    // Bytes never written are corruption whatever the key's state.
    if (same === false) this.wrongBytes.add(i);
    else this.wrongBytes.delete(i);
    this.verdicts.set(i, verdict);
    this.unverifiedKeys.delete(i);
    return verdict;
  }

  /** Forgets earlier read-backs, before a new one. */
  resetReads(): void {
    this.verdicts.clear();
    this.unverifiedKeys.clear();
    this.wrongBytes.clear();
  }

  /** Key i could not be read back. */
  unverified(i: number): void {
    if (!this.verdicts.has(i)) this.unverifiedKeys.add(i);
  }

  /** Indexes of the keys to read back: every key written. */
  written(): number[] {
    const out: number[] = [];
    this.states.forEach((s, i) => {
      if (s !== KeyState.UNWRITTEN) out.push(i);
    });
    return out;
  }

  result(): DurabilityResult {
    const count = (v: ReadVerdict) => [...this.verdicts.values()].filter((x) => x === v).length;
    const examples = [...this.verdicts]
      .filter(([, v]) => v === ReadVerdict.LOST || v === ReadVerdict.CORRUPT)
      .slice(0, 10)
      .map(([i, v]) => `${this.key(i)} ${v}`);
    return {
      vm: this.vm,
      written: this.written().length,
      acked: this.acked,
      lost: count(ReadVerdict.LOST),
      unacked: this.states.filter((s) => s === KeyState.GAVE_UP || s === KeyState.PENDING).length,
      unackedLanded: count(ReadVerdict.LANDED),
      unackedAbsent: count(ReadVerdict.ABSENT),
      corrupt: this.wrongBytes.size,
      unverified: this.unverifiedKeys.size,
      attempts: this.attempts,
      failedAttempts: Object.fromEntries(this.failedByCode),
      examples,
    };
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface DurabilityOptions {
  vm: string;
  seed: string | number;
  /** Makes this run's keys unique on the VM (e.g. the run's id); keys are `<prefix>:<n>`. */
  prefix: string;
  clock: Clock;
  send: Send;
  /** Stop starting keys once this many are acknowledged. */
  targetAcked?: number | undefined;
  /** Stop starting keys once this many were handed out. */
  maxKeys?: number | undefined;
  /** Keys written at once (each writer waits for its key's outcome). */
  concurrency?: number | undefined;
  valueBytes?: { min: number; max: number } | undefined;
  maxAttempts?: number | undefined;
  retryMs?: number | undefined;
  maxRetryMs?: number | undefined;
  maxReadAttempts?: number | undefined;
  logger?: Logger | undefined;
}

export interface DurabilityProgress {
  written: number;
  acked: number;
  attempts: number;
  failedAttempts: number;
  inFlight: number;
}

/** Drives the ledger against a server: write phase (until a target or stop()), then verify(). */
export class DurabilityWorkload {
  readonly ledger: DurabilityLedger;
  private readonly o: DurabilityOptions;
  private readonly clock: Clock;
  private stopped = false;
  private aborted = false;
  private writing: Promise<void> | undefined;
  private inFlight = 0;
  private failed = 0;
  private attempts = 0;

  constructor(o: DurabilityOptions) {
    this.o = o;
    this.clock = o.clock;
    this.ledger = new DurabilityLedger({ vm: o.vm, seed: o.seed, prefix: o.prefix, valueBytes: o.valueBytes });
    const c = o.concurrency ?? DURABILITY_DEFAULTS.concurrency;
    if (!(Number.isInteger(c) && c >= 1 && c <= 10_000))
      throw new VmsimError(ErrorCode.CONFIG, `concurrency must be an integer in [1, 10000], got ${c}`);
    if (o.targetAcked === undefined && o.maxKeys === undefined)
      throw new VmsimError(ErrorCode.CONFIG, 'give targetAcked or maxKeys (or both)');
  }

  progress(): DurabilityProgress {
    return {
      written: this.ledger.size,
      acked: this.ledger.acked,
      attempts: this.attempts,
      failedAttempts: this.failed,
      inFlight: this.inFlight,
    };
  }

  /** Starts the writers; resolves when the target is reached or stop() was called and all settled. */
  write(): Promise<void> {
    this.writing ??= Promise.all(
      Array.from({ length: this.o.concurrency ?? DURABILITY_DEFAULTS.concurrency }, () => this.writer()),
    ).then(() => undefined);
    return this.writing;
  }

  /** No new keys; keys in progress finish their attempts. */
  stop(): void {
    this.stopped = true;
  }

  /** No new keys and no more retries (the run is failing anyway): keys in progress stay unacknowledged. */
  abort(): void {
    this.stopped = true;
    this.aborted = true;
  }

  /** The result when the VM never served again: every written key unverified. */
  unverifiable(): DurabilityResult {
    this.ledger.resetReads();
    for (const i of this.ledger.written()) this.ledger.unverified(i);
    return this.ledger.result();
  }

  private more(): boolean {
    if (this.stopped) return false;
    if (this.o.maxKeys !== undefined && this.ledger.size >= this.o.maxKeys) return false;
    if (this.o.targetAcked !== undefined && this.ledger.acked >= this.o.targetAcked) return false;
    return true;
  }

  private async writer(): Promise<void> {
    const maxAttempts = this.o.maxAttempts ?? DURABILITY_DEFAULTS.maxAttempts;
    while (this.more()) {
      const i = this.ledger.take();
      const key = this.ledger.key(i);
      const value = this.ledger.value(i);
      let backoff = this.o.retryMs ?? DURABILITY_DEFAULTS.retryMs;
      for (let a = 1; ; a++) {
        this.inFlight++;
        this.attempts++;
        const reply = await this.o.send(this.o.vm, {
          app: 'db',
          op: 'PUT',
          key,
          value,
          bytes: key.length + value.length + 64,
        });
        this.inFlight--;
        this.ledger.attempt(i, reply);
        if (this.ledger.state(i) === KeyState.ACKED) break;
        this.failed++;
        // A stopped run still retries the key it holds: a key is settled one way or the other.
        if (a >= maxAttempts || this.aborted) {
          this.ledger.giveUp(i);
          this.o.logger?.warn({ vm: this.o.vm, key, attempts: a }, 'durability: gave up on a write');
          break;
        }
        await this.sleep(backoff);
        backoff = Math.min(backoff * 2, this.o.maxRetryMs ?? DURABILITY_DEFAULTS.maxRetryMs);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => this.clock.at(this.clock.now() + ms, r));
  }

  /**
   * Reads every written key back (retrying reads that fail, as the VM may still be
   * recovering) and judges each; call after write() resolved and the VM is serving again.
   */
  async verify(concurrency = this.o.concurrency ?? DURABILITY_DEFAULTS.concurrency): Promise<DurabilityResult> {
    const keys = this.ledger.written();
    this.ledger.resetReads();
    const maxReads = this.o.maxReadAttempts ?? DURABILITY_DEFAULTS.maxReadAttempts;
    let next = 0;
    const reader = async (): Promise<void> => {
      while (next < keys.length) {
        const i = keys[next++]!;
        const key = this.ledger.key(i);
        let backoff = this.o.retryMs ?? DURABILITY_DEFAULTS.retryMs;
        for (let a = 1; ; a++) {
          const r = await this.o.send(this.o.vm, { app: 'db', op: 'GET', key, bytes: key.length + 64 });
          if (r.ok && (r.status === 200 || r.status === 404)) {
            const v = this.ledger.check(i, r);
            if (v === ReadVerdict.LOST || v === ReadVerdict.CORRUPT)
              this.o.logger?.error({ vm: this.o.vm, key, verdict: v }, 'durability: a key did not read back');
            break;
          }
          if (a >= maxReads) {
            this.ledger.unverified(i);
            break;
          }
          await this.sleep(backoff);
          backoff = Math.min(backoff * 2, this.o.maxRetryMs ?? DURABILITY_DEFAULTS.maxRetryMs);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, keys.length)) }, reader));
    return this.ledger.result();
  }
}
