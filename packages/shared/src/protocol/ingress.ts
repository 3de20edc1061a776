import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { ErrorReply } from './reply.ts';

/**
 * The outside world's traffic: a client addresses a VM by name on a host's physical NIC.
 * The hypervisor's virtual switch serves these subjects and carries the request to the
 * guest's vNIC; the reply goes back through the switch to the client's reply subject.
 */
const declaredBytes = z
  .number()
  .int()
  .min(0)
  .max(64 * 1024 * 1024);
const realBytes = (max: number) =>
  z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length <= max, `bytes, at most ${max}`);
const name = z.string().min(1).max(128);

export const WebRequest = z.object({
  app: z.literal('web'),
  op: z.enum(['GET', 'POST']),
  path: z.string().min(1).max(1024).startsWith('/'),
  /** Declared size on the wire: networks carry byte counts, not real payloads. */
  bytes: declaredBytes,
  body: realBytes(256 * 1024).optional(),
});

/** SMTP-like submission into a spool, then fetch by id (as POP/IMAP would). */
export const MailRequest = z.object({
  app: z.literal('mail'),
  op: z.enum(['SUBMIT', 'FETCH', 'LIST']),
  mailbox: name,
  /** The message id, for FETCH. */
  id: z.number().int().min(0).optional(),
  bytes: declaredBytes,
  body: realBytes(256 * 1024).optional(),
});

/** A key-value store: get, put (acknowledged once durable), and ordered scans. */
export const DbRequest = z.object({
  app: z.literal('db'),
  op: z.enum(['GET', 'PUT', 'SCAN']),
  key: z.string().min(1).max(256),
  value: realBytes(64 * 1024).optional(),
  /** Most keys a SCAN returns, from `key` on. */
  limit: z.number().int().min(1).max(1000).optional(),
  bytes: declaredBytes,
});

/**
 * File transfer. Files can be far larger than a message, so an upload carries a seed and
 * the guest writes the bytes the seed generates; a download returns their digest.
 */
export const FileRequest = z.object({
  app: z.literal('file'),
  op: z.enum(['UPLOAD', 'DOWNLOAD']),
  name,
  size: z
    .number()
    .int()
    .min(0)
    .max(1024 * 1024 * 1024)
    .optional(),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  bytes: declaredBytes,
});

/** A player's input to a game server running a fixed tick loop. */
export const GameRequest = z.object({
  app: z.literal('game'),
  op: z.enum(['JOIN', 'INPUT', 'LEAVE']),
  player: name,
  seq: z.number().int().min(0),
  bytes: declaredBytes,
});

export const IngressRequest = z.discriminatedUnion('app', [
  WebRequest,
  MailRequest,
  DbRequest,
  FileRequest,
  GameRequest,
]);
export type IngressRequest = z.infer<typeof IngressRequest>;
export type AppKind = IngressRequest['app'];
export type WebRequest = z.infer<typeof WebRequest>;
export type MailRequest = z.infer<typeof MailRequest>;
export type DbRequest = z.infer<typeof DbRequest>;
export type FileRequest = z.infer<typeof FileRequest>;
export type GameRequest = z.infer<typeof GameRequest>;
export const APP_KINDS = ['web', 'mail', 'db', 'file', 'game'] as const satisfies readonly AppKind[];

export const IngressOk = z.object({
  ok: z.literal(true),
  status: z.number().int().min(100).max(599),
  /**
   * Bytes on the wire, what the switch charges on the host NIC: bounded (a 1 GiB file and
   * headers fit), as a guest's absurd figure would hold the NIC for every VM.
   */
  bytes: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31),
  /** A digest of the real bytes the app read or wrote, so clients can check content. */
  digest: z.string().max(128).optional(),
  /** Real bytes returned (a db value, a fetched message), when small. */
  data: realBytes(256 * 1024).optional(),
  /** App-specific figures: a new message id, keys scanned, the tick that acknowledged an input. */
  meta: z.record(z.string(), z.union([z.number(), z.string()])).optional(),
});
export const IngressReply = z.discriminatedUnion('ok', [IngressOk, ErrorReply]);
export type IngressReply = z.infer<typeof IngressReply>;

export function ingressSubject(ns: Namespace, hostId: string, vmName: string): string {
  return `${ns}.net.${token(hostId, 'host id')}.vm.${token(vmName, 'vm name')}`;
}
export function anyIngressSubject(ns: Namespace, hostId: string): string {
  return `${ns}.net.${token(hostId, 'host id')}.vm.*`;
}
/** The VM name of an ingress subject. */
export function ingressVmName(subject: string): string | undefined {
  const i = subject.lastIndexOf('.');
  return i >= 0 ? subject.slice(i + 1) : undefined;
}
