import { APP_KINDS, ErrorCode, type AppKind, type IngressReply, type IngressRequest, type Rng } from '@vmsim/shared';
import { History, UNCHECKED, type Verdict, type Write } from './history.ts';

/** An ok reply (shared exports its schema, not its type). */
export type OkReply = Extract<IngressReply, { ok: true }>;

/**
 * What clients of each server kind ask for: a request source per target, drawing
 * operations from the target's mix and contents from its own random stream. Sources that
 * depend on earlier replies (mail ids, uploaded files, db values) share what they learned
 * per VM, so two targets at one VM never disagree about what it holds.
 */

/** Every op a server kind answers. */
export const APP_OPS = {
  web: ['GET', 'POST'],
  mail: ['SUBMIT', 'FETCH', 'LIST'],
  db: ['GET', 'PUT', 'SCAN'],
  file: ['UPLOAD', 'DOWNLOAD'],
  game: ['JOIN', 'INPUT', 'LEAVE'],
} as const satisfies Record<AppKind, readonly string[]>;

/** The ops a mix weighs: a game client JOINs by itself, before its first input. */
export const MIX_OPS = {
  web: ['GET', 'POST'],
  mail: ['SUBMIT', 'FETCH', 'LIST'],
  db: ['GET', 'PUT', 'SCAN'],
  file: ['UPLOAD', 'DOWNLOAD'],
  game: ['INPUT', 'LEAVE'],
} as const satisfies Record<AppKind, readonly string[]>;

/** Typical shares: reads dominate everywhere; a mailbox is read about twice per message sent. */
export const DEFAULT_MIX: Readonly<Record<AppKind, Readonly<Record<string, number>>>> = {
  web: { GET: 9, POST: 1 },
  mail: { SUBMIT: 3, FETCH: 6, LIST: 1 },
  db: { GET: 8, PUT: 1.5, SCAN: 0.5 },
  file: { UPLOAD: 3, DOWNLOAD: 7 },
  game: { INPUT: 1, LEAVE: 0 },
};

const MiB = 1024 * 1024;

/** What a typical small web site gets asked for. */
export const DEFAULT_PATHS: readonly string[] = [
  '/',
  '/index.html',
  '/about.html',
  '/static/app.js',
  '/static/style.css',
  '/img/hero.jpg',
  '/img/logo.png',
  '/api/items',
];
export const POST_PATHS: readonly string[] = ['/api/items', '/upload'];

/** Declared request-line + header bytes: real browsers send a few hundred. */
export const HEADER_BYTES = { min: 300, max: 600 } as const;
/** POST bodies are real bytes so the guest can digest them. */
export const POST_BODY_BYTES = { min: 256, max: 8 * 1024 } as const;
/** Real message bodies, log-uniform: most mail is small. */
export const MAIL_BODY_BYTES = { min: 1024, max: 64 * 1024 } as const;
/** SMTP envelope and headers around a body. */
export const MAIL_ENVELOPE_BYTES = { min: 200, max: 600 } as const;
/** Real db values, log-uniform. */
export const DB_VALUE_BYTES = { min: 100, max: 4 * 1024 } as const;
export const DB_SCAN_LIMIT = { min: 10, max: 100 } as const;
/** File sizes, log-uniform: heavy-tailed, most files small, a few large. */
export const FILE_BYTES = { min: 1024, max: 16 * MiB } as const;
/** The largest file an upload may declare (a request's declared bytes are at most 64 MiB). */
export const MAX_FILE_BYTES = 60 * MiB;
export const GAME_INPUT_BYTES = { min: 64, max: 200 } as const;

export const DEFAULT_KEYS = 10_000;
/** Zipf exponent of db key popularity: about 1 in real key-value workloads. */
export const DEFAULT_KEY_SKEW = 0.99;
export const DEFAULT_MAILBOXES = 100;
export const DEFAULT_FILES = 200;
/** Players of an open-model game target (a closed one has one player per user). */
export const DEFAULT_PLAYERS = 16;
/** Message ids remembered per mailbox. */
const MAX_IDS_PER_MAILBOX = 1_000;

/** Per-app settings of a target; each applies to one app only. */
export interface AppOptions {
  /** web: paths GET asks for. */
  paths?: readonly string[] | undefined;
  /** db: size of the key space. */
  keys?: number | undefined;
  /** db: Zipf exponent of key popularity (0 = uniform). */
  keySkew?: number | undefined;
  /** mail: mailboxes mail is sent to. */
  mailboxes?: number | undefined;
  /** file: distinct file names. */
  files?: number | undefined;
  /** file: size range of uploads. */
  minFileBytes?: number | undefined;
  maxFileBytes?: number | undefined;
  /** game, open model: players sharing the arrivals (a closed target has one per user). */
  players?: number | undefined;
}

const OPTION_APP: Readonly<Record<keyof AppOptions, AppKind>> = {
  paths: 'web',
  keys: 'db',
  keySkew: 'db',
  mailboxes: 'mail',
  files: 'file',
  minFileBytes: 'file',
  maxFileBytes: 'file',
  players: 'game',
};

export interface Problem {
  /** The field, relative to the target, e.g. ['mix', 'PUT']. */
  path: (string | number)[];
  message: string;
}

/**
 * What is wrong with a target's app, mix and app options (empty when nothing). `ranges`
 * off leaves number ranges to a schema that checks them already.
 */
export function appProblems(app: unknown, mix: unknown, opts: AppOptions, ranges = true): Problem[] {
  if (!(APP_KINDS as readonly unknown[]).includes(app)) {
    return ranges ? [{ path: ['app'], message: `must be one of ${APP_KINDS.join(', ')}, got ${String(app)}` }] : [];
  }
  const kind = app as AppKind;
  const out: Problem[] = [];
  if (mix !== undefined) {
    if (typeof mix !== 'object' || mix === null) return [{ path: ['mix'], message: 'must be an object of weights' }];
    const ops: readonly string[] = MIX_OPS[kind];
    let total = 0;
    let invalid = false;
    for (const [op, w] of Object.entries(mix)) {
      invalid ||= !ops.includes(op) || !(typeof w === 'number' && Number.isFinite(w) && w >= 0);
      if (!ops.includes(op)) {
        const hint = kind === 'game' && op === 'JOIN' ? ' (JOINs are sent by each player before its first input)' : '';
        out.push({ path: ['mix', op], message: `not an op of a ${kind} server: use ${ops.join(', ')}${hint}` });
      } else if (!(typeof w === 'number' && Number.isFinite(w) && w >= 0)) {
        if (ranges) out.push({ path: ['mix', op], message: `weight must be a number >= 0, got ${String(w)}` });
      } else total += w;
    }
    if (!invalid && !(total > 0)) out.push({ path: ['mix'], message: 'mix weights must not all be 0' });
  }
  for (const [key, owner] of Object.entries(OPTION_APP)) {
    if (opts[key as keyof AppOptions] !== undefined && owner !== kind) {
      out.push({ path: [key], message: `only for app '${owner}', this target is '${kind}'` });
    }
  }
  const int = (key: keyof AppOptions, min: number, max: number): void => {
    const v = opts[key];
    if (ranges && v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max))
      out.push({ path: [key], message: `must be an integer in [${min}, ${max}], got ${String(v)}` });
  };
  int('keys', 1, 1_000_000);
  int('mailboxes', 1, 1_000_000);
  int('files', 1, 1_000_000);
  int('players', 1, 1_000_000);
  int('minFileBytes', 0, MAX_FILE_BYTES);
  int('maxFileBytes', 0, MAX_FILE_BYTES);
  const { keySkew, minFileBytes, maxFileBytes, paths } = opts;
  if (ranges && keySkew !== undefined && !(Number.isFinite(keySkew) && keySkew >= 0 && keySkew <= 4))
    out.push({ path: ['keySkew'], message: `must be in [0, 4], got ${keySkew}` });
  if ((minFileBytes ?? FILE_BYTES.min) > (maxFileBytes ?? FILE_BYTES.max))
    out.push({ path: ['minFileBytes'], message: 'must not be above maxFileBytes' });
  if (ranges && paths !== undefined) {
    if (paths.length === 0) out.push({ path: ['paths'], message: 'must not be empty' });
    paths.forEach((p, i) => {
      if (!p.startsWith('/')) out.push({ path: ['paths', i], message: `path "${p}" must start with '/'` });
    });
  }
  return out;
}

/** The mix with every weighed op present: the app's defaults when none is given, else 0 for ops left out. */
export function resolveMix(app: AppKind, mix?: Readonly<Record<string, number>>): Record<string, number> {
  const given = mix ?? DEFAULT_MIX[app];
  return Object.fromEntries(MIX_OPS[app].map((op) => [op, given[op] ?? 0]));
}

/** A request on its way, with what to do with its outcome. */
export interface Pending {
  readonly request: IngressRequest;
  /** An ok reply in time: checks its content and learns from it. */
  ok?(reply: OkReply): Verdict;
  /** An error reply in time. */
  error?(code: string): void;
  /** No reply is waited for any more (timeout, abandoned); one may still come, see late. */
  gaveUp?(): void;
  /** A reply after the request was given up on. */
  late?(reply: IngressReply): void;
}

export interface RequestSource {
  /** The next request; `user` is the closed-model user sending it, if any. */
  next(user: number | undefined): Pending;
}

/** What one VM holds, as far as this client knows: shared by the targets at that VM. */
export class VmKnowledge {
  readonly history = new History();
  /** mail: acknowledged message ids per mailbox. */
  readonly mailIds = new Map<string, number[]>();
  /** file: names with an acknowledged upload, for picking downloads. */
  readonly uploaded: string[] = [];
  readonly uploadedSet = new Set<string>();
}

/** Knowledge per VM and app, plus tables that are costly to build. */
export class World {
  private readonly vms = new Map<string, VmKnowledge>();
  private readonly zipfs = new Map<string, Zipf>();

  vm(app: AppKind, vm: string): VmKnowledge {
    const k = `${app}/${vm}`;
    let v = this.vms.get(k);
    if (!v) {
      v = new VmKnowledge();
      this.vms.set(k, v);
    }
    return v;
  }

  zipf(n: number, s: number): Zipf {
    const k = `${n}/${s}`;
    let z = this.zipfs.get(k);
    if (!z) {
      z = new Zipf(n, s);
      this.zipfs.set(k, z);
    }
    return z;
  }
}

export interface SourceContext {
  app: AppKind;
  vm: string;
  /** Resolved weights, see resolveMix. */
  mix: Readonly<Record<string, number>>;
  options: AppOptions;
  /** Draws which op comes next. */
  opRng: Rng;
  /** Draws what the request carries (keys, sizes, bytes). */
  contentRng: Rng;
  world: World;
  /** Tells this target's players apart from another target's. */
  targetIndex: number;
  /** Closed-model users, undefined for an open target. */
  users: number | undefined;
}

export function createSource(c: SourceContext): RequestSource {
  switch (c.app) {
    case 'web':
      return webSource(c);
    case 'mail':
      return mailSource(c);
    case 'db':
      return dbSource(c);
    case 'file':
      return fileSource(c);
    case 'game':
      return gameSource(c);
  }
}

/** Draws ops by weight; an op of weight 0 is never drawn. */
function opPicker(ops: readonly string[], mix: Readonly<Record<string, number>>): (rng: Rng) => string {
  const weights = ops.map((op) => mix[op] ?? 0);
  const total = weights.reduce((a, b) => a + b, 0);
  const last = ops[weights.findLastIndex((w) => w > 0)] ?? ops[0]!;
  return (rng) => {
    let r = rng.next() * total;
    for (let i = 0; i < ops.length; i++) {
      if (r < weights[i]!) return ops[i]!;
      r -= weights[i]!;
    }
    // Float rounding at the very top of the range.
    return last;
  };
}

function webSource(c: SourceContext): RequestSource {
  const pick = opPicker(MIX_OPS.web, c.mix);
  const paths = c.options.paths && c.options.paths.length > 0 ? c.options.paths : DEFAULT_PATHS;
  return { next: () => ({ request: webRequest(pick(c.opRng) === 'POST', c.contentRng, paths) }) };
}

function webRequest(isPost: boolean, rng: Rng, paths: readonly string[]): IngressRequest {
  const headers = uniformInt(rng, HEADER_BYTES.min, HEADER_BYTES.max);
  if (!isPost) return { app: 'web', op: 'GET', path: rng.pick(paths), bytes: headers };
  const body = randomBytes(rng, uniformInt(rng, POST_BODY_BYTES.min, POST_BODY_BYTES.max));
  return { app: 'web', op: 'POST', path: rng.pick(POST_PATHS), bytes: body.length + headers, body };
}

/** One request as a browser-ish client would send it (one stream for op and contents). */
export function makeRequest(
  rng: Rng,
  mix: Readonly<Record<string, number>>,
  paths: readonly string[] = DEFAULT_PATHS,
): IngressRequest {
  const get = mix['GET'] ?? 0;
  // GET when the draw lands in the GET share; a zero weight can never be drawn.
  const isPost = rng.next() * (get + (mix['POST'] ?? 0)) >= get;
  return webRequest(isPost, rng, paths);
}

function mailSource(c: SourceContext): RequestSource {
  const pick = opPicker(MIX_OPS.mail, c.mix);
  const rng = c.contentRng;
  const known = c.world.vm('mail', c.vm);
  const count = c.options.mailboxes ?? DEFAULT_MAILBOXES;
  const width = Math.max(4, String(count - 1).length);
  const remember = (mailbox: string, reply: IngressReply): void => {
    const id = reply.ok ? messageId(reply.meta?.['id']) : undefined;
    if (id === undefined) return;
    let ids = known.mailIds.get(mailbox);
    if (!ids) known.mailIds.set(mailbox, (ids = []));
    ids.push(id);
    if (ids.length > MAX_IDS_PER_MAILBOX) ids.splice(0, ids.length - MAX_IDS_PER_MAILBOX);
  };
  return {
    next: () => {
      const op = pick(c.opRng);
      const mailbox = `user${String(rng.int(count)).padStart(width, '0')}`;
      if (op === 'SUBMIT') {
        const body = randomBytes(rng, logUniformInt(rng, MAIL_BODY_BYTES.min, MAIL_BODY_BYTES.max));
        const bytes = body.length + uniformInt(rng, MAIL_ENVELOPE_BYTES.min, MAIL_ENVELOPE_BYTES.max);
        return {
          request: { app: 'mail', op: 'SUBMIT', mailbox, bytes, body },
          ok: (r) => {
            remember(mailbox, r);
            return UNCHECKED;
          },
          late: (r) => remember(mailbox, r),
        };
      }
      const ids = known.mailIds.get(mailbox);
      // Only ids the server handed out are fetched; a client with none lists its mailbox.
      if (op === 'FETCH' && ids && ids.length > 0) {
        return { request: { app: 'mail', op: 'FETCH', mailbox, id: rng.pick(ids), bytes: uniformInt(rng, 40, 120) } };
      }
      return { request: { app: 'mail', op: 'LIST', mailbox, bytes: uniformInt(rng, 40, 100) } };
    },
  };
}

function messageId(v: number | string | undefined): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Refusals that mean the write was never attempted; any other failure may have landed. */
const NOT_ATTEMPTED: ReadonlySet<string> = new Set([
  ErrorCode.OVERLOAD,
  ErrorCode.NO_SUCH_VM,
  ErrorCode.BAD_SUBJECT_TOKEN,
]);

function dbSource(c: SourceContext): RequestSource {
  const pick = opPicker(MIX_OPS.db, c.mix);
  const rng = c.contentRng;
  const { history } = c.world.vm('db', c.vm);
  const n = c.options.keys ?? DEFAULT_KEYS;
  const zipf = c.world.zipf(n, c.options.keySkew ?? DEFAULT_KEY_SKEW);
  const width = Math.max(6, String(n - 1).length);
  const overhead = (): number => uniformInt(rng, 32, 96);
  return {
    next: () => {
      const op = pick(c.opRng);
      const key = `user:${String(zipf.draw(rng)).padStart(width, '0')}`;
      if (op === 'PUT') {
        const value = randomBytes(rng, logUniformInt(rng, DB_VALUE_BYTES.min, DB_VALUE_BYTES.max));
        const w = history.write(key, hex(fnv1a32(value)));
        const outcome = (r: IngressReply): void => {
          if (r.ok) history.acked(key, w);
          else history.failed(key, w, !NOT_ATTEMPTED.has(r.code));
        };
        return {
          request: { app: 'db', op: 'PUT', key, value, bytes: key.length + value.length + overhead() },
          ok: (r) => {
            outcome(r);
            return UNCHECKED;
          },
          error: (code) => history.failed(key, w, !NOT_ATTEMPTED.has(code)),
          late: outcome,
        };
      }
      if (op === 'SCAN') {
        const limit = uniformInt(rng, DB_SCAN_LIMIT.min, DB_SCAN_LIMIT.max);
        return { request: { app: 'db', op: 'SCAN', key, limit, bytes: key.length + overhead() } };
      }
      const read = history.read(key);
      const request: IngressRequest = { app: 'db', op: 'GET', key, bytes: key.length + overhead() };
      if (!read) return { request };
      const forget = (): void => history.forget(key, read);
      return {
        request,
        ok: (r) => {
          // The value itself when the reply carries it, else the digest the server computed.
          const observed = r.status === 404 ? undefined : r.data ? hex(fnv1a32(r.data)) : (r.digest ?? 'none');
          return history.check(key, read, observed);
        },
        error: forget,
        gaveUp: forget,
      };
    },
  };
}

function fileSource(c: SourceContext): RequestSource {
  const pick = opPicker(MIX_OPS.file, c.mix);
  const rng = c.contentRng;
  const known = c.world.vm('file', c.vm);
  const { history } = known;
  const count = c.options.files ?? DEFAULT_FILES;
  const width = Math.max(4, String(count - 1).length);
  const minBytes = c.options.minFileBytes ?? FILE_BYTES.min;
  const maxBytes = c.options.maxFileBytes ?? FILE_BYTES.max;
  const acked = (name: string, w: Write, r: OkReply): void => {
    history.acked(name, w, r.digest);
    if (!known.uploadedSet.has(name)) {
      known.uploadedSet.add(name);
      known.uploaded.push(name);
    }
  };
  return {
    next: () => {
      const op = pick(c.opRng);
      // Only files this client uploaded are downloaded; until there is one, it uploads.
      if (op === 'DOWNLOAD' && known.uploaded.length > 0) {
        const name = rng.pick(known.uploaded);
        const read = history.read(name);
        const request: IngressRequest = {
          app: 'file',
          op: 'DOWNLOAD',
          name,
          bytes: name.length + uniformInt(rng, 100, 300),
        };
        if (!read) return { request };
        const forget = (): void => history.forget(name, read);
        return {
          request,
          ok: (r) => history.check(name, read, r.status === 404 ? undefined : (r.digest ?? 'none')),
          error: forget,
          gaveUp: forget,
        };
      }
      const name = `file-${String(rng.int(count)).padStart(width, '0')}.bin`;
      const size = logUniformInt(rng, minBytes, maxBytes);
      const seed = Math.floor(rng.next() * 0x1_0000_0000);
      // The guest generates the content from the seed; its digest is learned from the ack.
      const w = history.write(name, undefined);
      const outcome = (r: IngressReply): void => {
        if (r.ok) acked(name, w, r);
        else history.failed(name, w, !NOT_ATTEMPTED.has(r.code));
      };
      return {
        request: { app: 'file', op: 'UPLOAD', name, size, seed, bytes: size + uniformInt(rng, 200, 500) },
        ok: (r) => {
          outcome(r);
          return UNCHECKED;
        },
        error: (code) => history.failed(name, w, !NOT_ATTEMPTED.has(code)),
        late: outcome,
      };
    },
  };
}

function gameSource(c: SourceContext): RequestSource {
  const pick = opPicker(MIX_OPS.game, c.mix);
  const rng = c.contentRng;
  const count = c.users ?? c.options.players ?? DEFAULT_PLAYERS;
  const width = Math.max(3, String(count - 1).length);
  const names = Array.from({ length: count }, (_, i) => `t${c.targetIndex}-p${String(i).padStart(width, '0')}`);
  const joined = new Array<boolean>(count).fill(false);
  const seqs = new Array<number>(count).fill(0);
  return {
    next: (user) => {
      // A closed-model user is one player; open arrivals fall on a random player.
      const p = user !== undefined ? user % count : rng.int(count);
      const player = names[p]!;
      const seq = seqs[p]!;
      seqs[p] = seq + 1;
      if (!joined[p]) {
        joined[p] = true;
        // A failed JOIN is tried again at the player's next turn.
        const retry = (): void => {
          joined[p] = false;
        };
        return {
          request: { app: 'game', op: 'JOIN', player, seq, bytes: uniformInt(rng, 100, 300) },
          error: retry,
          gaveUp: retry,
        };
      }
      if (pick(c.opRng) === 'LEAVE') {
        joined[p] = false;
        return { request: { app: 'game', op: 'LEAVE', player, seq, bytes: uniformInt(rng, 40, 80) } };
      }
      const bytes = uniformInt(rng, GAME_INPUT_BYTES.min, GAME_INPUT_BYTES.max);
      return { request: { app: 'game', op: 'INPUT', player, seq, bytes } };
    },
  };
}

/**
 * Zipf-distributed ranks in [0, n): rank 0 is the most popular. Inverse CDF by binary
 * search over a table built once per (n, s).
 */
export class Zipf {
  private readonly cdf: Float64Array;

  constructor(n: number, s: number) {
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) this.cdf[i] = sum += 1 / (i + 1) ** s;
    for (let i = 0; i < n; i++) this.cdf[i]! /= sum;
  }

  draw(rng: Rng): number {
    const u = rng.next();
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cdf[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** FNV-1a, 32 bits: what the guest digests content with. */
export function fnv1a32(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193) >>> 0;
  return h;
}

/** A digest as the guest writes it: 8 hex digits. */
export function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Integer uniform in [min, max]. */
export function uniformInt(rng: Rng, min: number, max: number): number {
  return min + rng.int(max - min + 1);
}

/** Integer in [min, max], uniform in log: as many 1-2 KiB as 1-2 MiB ones, per octave. */
export function logUniformInt(rng: Rng, min: number, max: number): number {
  if (min <= 0) return uniformInt(rng, min, max);
  const lo = Math.log(min);
  const x = Math.floor(Math.exp(lo + rng.next() * (Math.log(max + 1) - lo)));
  return Math.min(max, Math.max(min, x));
}

export function randomBytes(rng: Rng, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  // Four bytes per draw: bodies are up to 64 KiB and drawn at every write.
  for (let i = 0; i < n; i += 4) {
    let w = Math.floor(rng.next() * 4294967296);
    for (let k = 0; k < 4 && i + k < n; k++) {
      out[i + k] = w & 0xff;
      w >>>= 8;
    }
  }
  return out;
}
