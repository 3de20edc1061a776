import type { z } from 'zod';
import { decodeRaw, encode, type Rng } from '@vmsim/shared';

/** The kinds of bad input the fuzzer makes; each payload says which it is. */
export const FUZZ_KINDS = [
  'random-bytes',
  'truncated',
  'oversized',
  'wrong-types',
  'missing-fields',
  'extra-fields',
  'huge-numbers',
  'negative-sizes',
  'unicode',
  'deep-nesting',
  'not-an-object',
  'empty',
] as const;
export type FuzzKind = (typeof FUZZ_KINDS)[number];

export interface FuzzPayload {
  kind: FuzzKind;
  bytes: Uint8Array;
  /** Whether the family's schema accepts it (only read-only families are sent valid payloads). */
  valid: boolean;
}

export interface FuzzFamily {
  /** Valid messages of the family, which the mutations start from. */
  templates: Record<string, unknown>[];
  /** The schema the receiving service validates with. */
  schema: z.ZodType;
  /** Valid payloads may be sent (queries): otherwise every payload must be invalid. */
  readOnly?: boolean;
  /** The largest field the service accepts, in bytes: `oversized` goes past it. */
  fieldLimitBytes?: number;
}

export interface FuzzOptions {
  /** The bus's max_payload: nothing larger is generated (the client refuses to send it). */
  maxPayload: number;
}

const HUGE = [
  1e308,
  -1e308,
  Number.MAX_SAFE_INTEGER + 2,
  2 ** 53,
  2 ** 64,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  1.5,
  -0,
  0xffffffff,
];
const NEGATIVE = [-1, -(2 ** 31), -1e300, -0.5, Number.MIN_SAFE_INTEGER];
const UNICODE = [
  '\u0000',
  '\ud800',
  '\udfff\ud800',
  '\u202e\u202d',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  '🧨💥',
  'a\u0301\u0301\u0301',
  '\uFEFF',
  '../../etc/passwd',
  '*',
  '>',
  'a b',
  'x.y',
  '\r\n',
  '__proto__',
];

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(256);
  return out;
}

function unicodeString(rng: Rng, maxParts = 8): string {
  let s = '';
  const n = 1 + rng.int(maxParts);
  for (let i = 0; i < n; i++) s += rng.pick(UNICODE);
  return s;
}

/** A value of another type than `v`. */
function otherType(rng: Rng, v: unknown): unknown {
  const options: unknown[] = [
    'str',
    42,
    -7.25,
    true,
    null,
    [1, 'two', null],
    { nested: { deeper: 1 } },
    new Uint8Array([1, 2, 3]),
    new Date(0),
  ];
  for (;;) {
    const c = rng.pick(options);
    if (typeof c !== typeof v || Array.isArray(c) !== Array.isArray(v) || (c === null) !== (v === null)) return c;
  }
}

/** msgpack of `depth` nested one-element arrays (or maps) around nil, built by hand (pack recurses). */
function deepBytes(rng: Rng, depth: number): Uint8Array {
  const map = rng.next() < 0.5;
  const out = new Uint8Array(map ? depth * 3 + 1 : depth + 1);
  let i = 0;
  for (let d = 0; d < depth; d++) {
    if (map) {
      out[i++] = 0x81; // fixmap of 1
      out[i++] = 0xa1; // fixstr of 1
      out[i++] = 0x6b; // 'k'
    } else out[i++] = 0x91; // fixarray of 1
  }
  out[i] = 0xc0;
  return out;
}

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { n: v };
  return v;
}

function keysOf(o: Record<string, unknown>): string[] {
  return Object.keys(o);
}

/** A fresh copy of one template with one kind of damage. */
function mutate(rng: Rng, fam: FuzzFamily, kind: FuzzKind, opts: FuzzOptions): Uint8Array {
  const t = structuredClone(rng.pick(fam.templates));
  const keys = keysOf(t);
  const someKey = (): string => (keys.length ? rng.pick(keys) : 'x');
  switch (kind) {
    case 'random-bytes':
      return randomBytes(rng, 1 + rng.int(rng.next() < 0.9 ? 256 : 8192));
    case 'truncated': {
      const full = encode(t);
      return full.subarray(0, Math.max(1, rng.int(full.length)));
    }
    case 'oversized': {
      // Past what the service takes, within what the bus carries; now and then right at the bus's limit.
      const limit = fam.fieldLimitBytes ?? 4096;
      const top = opts.maxPayload - 4096;
      const size = rng.next() < 0.03 ? top : Math.min(top, limit + 1 + rng.int(Math.max(1, limit)));
      if (rng.next() < 0.3) return randomBytes(rng, size);
      const k = someKey();
      t[k] = rng.next() < 0.5 ? 'x'.repeat(size) : randomBytes(rng, size);
      return encode(t);
    }
    case 'wrong-types': {
      const n = 1 + rng.int(Math.max(1, keys.length));
      for (let i = 0; i < n; i++) {
        const k = someKey();
        t[k] = otherType(rng, t[k]);
      }
      return encode(t);
    }
    case 'missing-fields': {
      const n = 1 + rng.int(Math.max(1, keys.length));
      for (let i = 0; i < n; i++) delete t[someKey()];
      return encode(t);
    }
    case 'extra-fields': {
      // Extra keys alone are stripped by the schemas, so one field is also broken.
      for (let i = 0; i < 1 + rng.int(6); i++)
        t[rng.next() < 0.2 ? unicodeString(rng) : `extra${i}`] = otherType(rng, 0);
      const k = someKey();
      t[k] = otherType(rng, t[k]);
      // Keys that mean something to JavaScript objects, packed from a Map (the packer itself reads them on objects).
      const m = new Map<string, unknown>(Object.entries(t));
      if (rng.next() < 0.5) m.set('constructor', { prototype: { polluted: true } });
      if (rng.next() < 0.5) m.set('__proto__', { polluted: true });
      return encode(m);
    }
    case 'huge-numbers': {
      const numeric = keys.filter((k) => typeof t[k] === 'number');
      const k = numeric.length ? rng.pick(numeric) : someKey();
      t[k] = rng.next() < 0.1 ? rng.pick([Infinity, -Infinity, NaN]) : rng.pick(HUGE);
      return encode(t);
    }
    case 'negative-sizes': {
      const numeric = keys.filter((k) => typeof t[k] === 'number');
      const k = numeric.length ? rng.pick(numeric) : someKey();
      t[k] = rng.pick(NEGATIVE);
      return encode(t);
    }
    case 'unicode': {
      const strings = keys.filter((k) => typeof t[k] === 'string');
      const k = strings.length ? rng.pick(strings) : someKey();
      t[k] = unicodeString(rng, rng.next() < 0.1 ? 4000 : 8);
      return encode(t);
    }
    case 'deep-nesting':
      if (rng.next() < 0.5) return deepBytes(rng, 100 + rng.int(20_000));
      t[someKey()] = nested(10 + rng.int(500));
      return encode(t);
    case 'not-an-object':
      return encode(rng.pick([null, 0, -1, 'text', true, [t], [], new Uint8Array(4), 1e308]));
    case 'empty':
      return rng.next() < 0.5 ? new Uint8Array(0) : encode({});
  }
}

function isValid(fam: FuzzFamily, bytes: Uint8Array): boolean {
  let v: unknown;
  try {
    v = decodeRaw(bytes);
  } catch {
    return false;
  }
  return fam.schema.safeParse(v).success;
}

/**
 * `n` bad payloads for one subject family, drawn from `rng` (the same seed gives the same
 * payloads), every kind in turn. A payload the family's schema happens to accept is drawn
 * again, unless the family is read-only (a query cannot do harm).
 */
export function fuzzPayloads(rng: Rng, fam: FuzzFamily, n: number, opts: FuzzOptions): FuzzPayload[] {
  const out: FuzzPayload[] = [];
  for (let i = 0; i < n; i++) {
    const kind = FUZZ_KINDS[i % FUZZ_KINDS.length]!;
    for (let attempt = 0; ; attempt++) {
      let bytes = mutate(rng, fam, kind, opts);
      if (attempt >= 5 && !fam.readOnly && isValid(fam, bytes)) {
        // Damage that the schema tolerates (any string is a fine host name): break one more field.
        const v = decodeRaw(bytes) as Record<string, unknown>;
        const k = rng.pick(Object.keys(v));
        v[k] = otherType(rng, v[k]);
        bytes = encode(v);
      }
      if (bytes.length > opts.maxPayload) continue;
      const valid = isValid(fam, bytes);
      if (!valid || fam.readOnly) {
        out.push({ kind, bytes, valid });
        break;
      }
      if (attempt > 20) throw new Error(`cannot make an invalid ${kind} payload for this family`);
    }
  }
  return out;
}
