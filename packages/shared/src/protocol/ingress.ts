import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { ErrorReply } from './reply.ts';

/**
 * The outside world's traffic: a client addresses a VM by name on a host's physical NIC.
 * The hypervisor's virtual switch serves these subjects and carries the request to the
 * guest's vNIC; the reply goes back through the switch to the client's reply subject.
 */
export const WebRequest = z.object({
  app: z.literal('web'),
  op: z.enum(['GET', 'POST']),
  path: z.string().min(1).max(1024).startsWith('/'),
  /** Declared size on the wire: networks carry byte counts, not real payloads. */
  bytes: z
    .number()
    .int()
    .min(0)
    .max(64 * 1024 * 1024),
  body: z.instanceof(Uint8Array).optional(),
});
export const IngressRequest = z.discriminatedUnion('app', [WebRequest]);
export type IngressRequest = z.infer<typeof IngressRequest>;
export type AppKind = IngressRequest['app'];

export const IngressOk = z.object({
  ok: z.literal(true),
  status: z.number().int().min(100).max(599),
  bytes: z.number().int().min(0),
  /** A digest of the real bytes the app read or wrote, so clients can check content. */
  digest: z.string().max(128).optional(),
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
