import { ErrorCode, IngressRequest, type Clock, type IngressReply } from '@vmsim/shared';
import { fnv1a32, hex } from '../apps.ts';
import type { Send } from '../load.ts';

export interface FakeGuestOptions {
  /** Simulated ms from receipt to reply of request i (the i-th received). */
  delayMs?: (i: number, req: IngressRequest) => number;
  /** Where in that delay the request takes effect, in [0, 1]: writes and reads overlap. */
  applyAt?: (i: number) => number;
}

/**
 * Every server kind in memory, for unit tests of the load: a linearizable store per app
 * (each request takes effect at one instant between its receipt and its reply), which
 * refuses what a real server would (a FETCH of an unknown id, an INPUT before JOIN, a
 * non-increasing seq). Every request is validated against the protocol schema.
 */
export class FakeGuest {
  readonly db = new Map<string, Uint8Array>();
  /** file name → digest of its content. */
  readonly files = new Map<string, string>();
  readonly mail = new Map<string, Set<number>>();
  readonly players = new Map<string, number>();
  /** Requests that failed the schema, and refusals, as text. */
  readonly invalid: string[] = [];
  readonly refused: string[] = [];
  received = 0;
  private nextMailId = 1;
  private readonly clock: Clock;
  private readonly delayMs: (i: number, req: IngressRequest) => number;
  private readonly applyAt: (i: number) => number;

  constructor(clock: Clock, opts: FakeGuestOptions = {}) {
    this.clock = clock;
    this.delayMs = opts.delayMs ?? (() => 5);
    this.applyAt = opts.applyAt ?? (() => 0.5);
  }

  /** The content digest the fake gives an upload. */
  static fileDigest(seed: number, size: number): string {
    return hex(fnv1a32(new TextEncoder().encode(`${seed}:${size}`)));
  }

  readonly send: Send = (_vm, req) => {
    const i = this.received++;
    const d = this.delayMs(i, req);
    const start = this.clock.now();
    return new Promise((resolve) => {
      this.clock.at(start + d * this.applyAt(i), () => {
        const reply = this.handle(req);
        this.clock.at(start + d, () => resolve(reply));
      });
    });
  };

  handle(req: IngressRequest): IngressReply {
    const parsed = IngressRequest.safeParse(req);
    if (!parsed.success) {
      this.invalid.push(`${JSON.stringify(req)}: ${parsed.error.message}`);
      return { ok: false, code: ErrorCode.SCHEMA, message: 'invalid' };
    }
    const ok = (bytes: number, extra: Partial<Extract<IngressReply, { ok: true }>> = {}): IngressReply => ({
      ok: true,
      status: 200,
      bytes,
      ...extra,
    });
    const refuse = (why: string): IngressReply => {
      this.refused.push(why);
      return { ok: false, code: ErrorCode.BAD_STATE, message: why };
    };
    switch (req.app) {
      case 'web':
        return ok(1000);
      case 'db': {
        if (req.op === 'PUT') {
          if (!req.value) return refuse(`PUT ${req.key} without a value`);
          this.db.set(req.key, req.value.slice());
          return ok(20);
        }
        if (req.op === 'SCAN') return ok(100, { meta: { keys: req.limit ?? 0 } });
        const v = this.db.get(req.key);
        return v ? ok(v.length, { data: v }) : { ok: true, status: 404, bytes: 20 };
      }
      case 'file': {
        if (req.op === 'UPLOAD') {
          if (req.size === undefined || req.seed === undefined) return refuse(`UPLOAD ${req.name} without size/seed`);
          const digest = FakeGuest.fileDigest(req.seed, req.size);
          this.files.set(req.name, digest);
          return ok(50, { digest });
        }
        const digest = this.files.get(req.name);
        return digest ? ok(1000, { digest }) : { ok: true, status: 404, bytes: 20 };
      }
      case 'mail': {
        let box = this.mail.get(req.mailbox);
        if (!box) this.mail.set(req.mailbox, (box = new Set()));
        if (req.op === 'SUBMIT') {
          if (!req.body) return refuse('SUBMIT without a body');
          const id = this.nextMailId++;
          box.add(id);
          return ok(30, { meta: { id } });
        }
        if (req.op === 'LIST') return ok(100, { meta: { count: box.size } });
        if (req.id === undefined || !box.has(req.id)) return refuse(`FETCH of unknown id ${req.id} in ${req.mailbox}`);
        return ok(4000);
      }
      case 'game': {
        const last = this.players.get(req.player);
        if (req.op === 'JOIN') {
          this.players.set(req.player, req.seq);
          return ok(200);
        }
        if (last === undefined) return refuse(`${req.op} from ${req.player} before JOIN`);
        if (req.seq <= last) return refuse(`seq ${req.seq} of ${req.player} after ${last}`);
        if (req.op === 'LEAVE') this.players.delete(req.player);
        else this.players.set(req.player, req.seq);
        return ok(100, { meta: { tick: 1 } });
      }
    }
  }
}
