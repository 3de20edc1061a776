import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { ErrorReply } from './reply.ts';
import { anyVm, vmPrefix } from './vm.ts';

/** The largest single disk transfer a guest may ask for (as a block layer's max segment); it keeps every message well under NATS' default 1 MiB max_payload. */
export const MAX_IO_BYTES = 256 * 1024;

const diskIndex = z.number().int().min(0).max(15);
const byteOffset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected bytes');

export const CpuHypercall = z.object({
  op: z.literal('cpu'),
  /** Work in CPU cycles; its duration depends on the host core's clock. */
  cycles: z.number().int().min(0).max(1e12),
});
export const DiskReadHypercall = z.object({
  op: z.literal('disk.read'),
  disk: diskIndex,
  offset: byteOffset,
  length: z.number().int().min(1).max(MAX_IO_BYTES),
});
export const DiskWriteHypercall = z.object({
  op: z.literal('disk.write'),
  disk: diskIndex,
  offset: byteOffset,
  data: bytes.refine((d) => d.length >= 1 && d.length <= MAX_IO_BYTES, `data must be 1..${MAX_IO_BYTES} bytes`),
});
export const DiskFlushHypercall = z.object({
  op: z.literal('disk.flush'),
  disk: diskIndex,
});

/** The largest network transfer one hypercall moves (a TSO/GRO super-frame). */
export const MAX_NET_BYTES = 64 * 1024;
const mib = z
  .number()
  .int()
  .min(1)
  .max(1024 * 1024);

/**
 * Guest RAM: the guest touches `mib` more of its memory (the hypervisor backs it with host
 * pages, or OOM-kills a guest past its limit) or gives some back. Freed pages stay backed
 * on the host until a balloon reclaims them.
 */
export const MemAllocHypercall = z.object({ op: z.literal('mem.alloc'), mib });
export const MemFreeHypercall = z.object({ op: z.literal('mem.free'), mib });
/** Traffic the guest itself sends out of its vNIC, or pulls in from the outside world (a bulk transfer). */
export const NetSendHypercall = z.object({
  op: z.literal('net.send'),
  bytes: z.number().int().min(1).max(MAX_NET_BYTES),
});
export const NetRecvHypercall = z.object({
  op: z.literal('net.recv'),
  bytes: z.number().int().min(1).max(MAX_NET_BYTES),
});

export const Hypercall = z.discriminatedUnion('op', [
  CpuHypercall,
  DiskReadHypercall,
  DiskWriteHypercall,
  DiskFlushHypercall,
  MemAllocHypercall,
  MemFreeHypercall,
  NetSendHypercall,
  NetRecvHypercall,
]);
export type Hypercall = z.infer<typeof Hypercall>;
export type HypercallOp = Hypercall['op'];
export const HYPERCALL_OPS = [
  'cpu',
  'disk.read',
  'disk.write',
  'disk.flush',
  'mem.alloc',
  'mem.free',
  'net.send',
  'net.recv',
] as const satisfies readonly HypercallOp[];

export const HypercallOk = z.object({
  ok: z.literal(true),
  /** Simulated ms the request waited in the hypervisor's queue. */
  waitMs: z.number(),
  /** Simulated ms the device spent on it. */
  serviceMs: z.number(),
  data: bytes.optional(),
});
export const HypercallReply = z.discriminatedUnion('ok', [HypercallOk, ErrorReply]);
export type HypercallReply = z.infer<typeof HypercallReply>;

export function hypercallSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.hc`;
}
export function anyHypercallSubject(ns: Namespace): string {
  return anyVm(ns, 'hc');
}
