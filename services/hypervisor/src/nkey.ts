import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { KeyPair } from '@nats-io/jwt';

/**
 * NATS nkeys (ed25519 keys in NATS's text form) signed with node's native ed25519. The
 * nkeys package signs in pure JavaScript: about 20 ms per key derivation and as much per
 * signature, 50-80 ms per user JWT, which would stall the hypervisor's event loop at every
 * guest start; native signing takes well under a millisecond. The text form is the one
 * nkeys defines: base32 (RFC 4648, no padding) of prefix byte(s) + key + CRC-16/XMODEM
 * (little-endian); a seed carries two prefix bytes, the seed marker and the key's role.
 */

/** The role of a key: the first byte of its public form, which base32 shows as O…, A…, U…. */
export const NKEY_ROLES = { operator: 14 << 3, account: 0, user: 20 << 3 } as const;
export type NKeyRole = keyof typeof NKEY_ROLES;

const SEED = 18 << 3; // 'S'
const PRIVATE = 15 << 3; // 'P'
const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Uint8Array {
  const out: number[] = [];
  let bits = 0;
  let acc = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new Error(`nkey: '${ch}' is not a base32 character`);
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((acc >>> (bits - 8)) & 255);
      bits -= 8;
    }
    acc &= (1 << bits) - 1;
  }
  return Uint8Array.from(out);
}

/** CRC-16/XMODEM: polynomial 0x1021, initial value 0. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function withCrc(body: Uint8Array): string {
  const crc = crc16(body);
  const all = new Uint8Array(body.length + 2);
  all.set(body);
  all[body.length] = crc & 255;
  all[body.length + 1] = crc >>> 8;
  return base32(all);
}

function checked(text: string): Uint8Array {
  const raw = unbase32(text);
  if (raw.length < 3) throw new Error('nkey: too short');
  const body = raw.subarray(0, raw.length - 2);
  const crc = raw[raw.length - 2]! | (raw[raw.length - 1]! << 8);
  if (crc16(body) !== crc) throw new Error('nkey: checksum mismatch');
  return body;
}

// PKCS#8 and SPKI wrappers of a raw ed25519 key (RFC 8410), for node's KeyObject.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

function roleOf(prefix: number): NKeyRole {
  for (const [name, p] of Object.entries(NKEY_ROLES)) if (p === prefix) return name as NKeyRole;
  throw new Error(`nkey: prefix byte ${prefix} is not an operator, account or user key`);
}

/** An nkey with its seed: it signs JWTs for the nats-io/jwt encoders (their KeyPair interface). */
export class NKey implements KeyPair {
  private readonly priv: KeyObject;
  private readonly pub: KeyObject;
  private readonly publicText: string;
  private readonly seedText: string;

  readonly role: NKeyRole;

  private constructor(role: NKeyRole, rawSeed: Uint8Array) {
    this.role = role;
    if (rawSeed.length !== 32) throw new Error('nkey: a seed has 32 bytes');
    this.priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, rawSeed]), format: 'der', type: 'pkcs8' });
    this.pub = createPublicKey(this.priv);
    const rawPub = this.pub.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519.length);
    const prefix = NKEY_ROLES[role];
    this.publicText = withCrc(Uint8Array.from([prefix, ...rawPub]));
    this.seedText = withCrc(Uint8Array.from([SEED | (prefix >> 5), (prefix & 31) << 3, ...rawSeed]));
  }

  /** A new random key of this role. */
  static create(role: NKeyRole): NKey {
    return new NKey(role, randomBytes(32));
  }

  /** The key whose seed this is ("SO…", "SA…", "SU…"). */
  static fromSeed(seed: string): NKey {
    const body = checked(seed.trim());
    if (body.length !== 34 || (body[0]! & 0xf8) !== SEED) throw new Error('nkey: not a seed');
    const prefix = ((body[0]! & 7) << 5) | (body[1]! >> 3);
    return new NKey(roleOf(prefix), body.subarray(2));
  }

  /** Checks a public key's form and checksum; returns its role. */
  static roleOfPublic(publicKey: string): NKeyRole {
    const body = checked(publicKey);
    if (body.length !== 33) throw new Error('nkey: not a public key');
    return roleOf(body[0]!);
  }

  getPublicKey(): string {
    return this.publicText;
  }

  /** The seed's text form. */
  seed(): string {
    return this.seedText;
  }

  getSeed(): Uint8Array {
    return new TextEncoder().encode(this.seedText);
  }

  /** The private key's text form ("P…": seed and public key, as the nkeys package gives it). */
  getPrivateKey(): Uint8Array {
    const rawSeed = this.priv.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_ED25519.length);
    const rawPub = this.pub.export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519.length);
    return new TextEncoder().encode(withCrc(Uint8Array.from([PRIVATE, ...rawSeed, ...rawPub])));
  }

  sign(input: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, input, this.priv));
  }

  verify(input: Uint8Array, sig: Uint8Array): boolean {
    return verify(null, input, this.pub, sig);
  }

  clear(): void {
    // KeyObjects cannot be wiped; dropping the reference is all there is.
  }

  seal(): Uint8Array {
    throw new Error('nkey: only curve keys seal');
  }

  open(): Uint8Array | null {
    throw new Error('nkey: only curve keys open');
  }
}
