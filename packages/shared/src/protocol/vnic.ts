import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { IngressReply, IngressRequest } from './ingress.ts';
import { anyVm, vmPrefix } from './vm.ts';

/** A frame the virtual switch delivers into a guest: one client request and its connection id. */
export const VnicRx = z.object({
  cid: z.number().int().min(0),
  req: IngressRequest,
});
export type VnicRx = z.infer<typeof VnicRx>;

/** A guest's answer on its vNIC; the switch routes it by connection id, never by address. */
export const VnicTx = z.object({
  cid: z.number().int().min(0),
  res: IngressReply,
});
export type VnicTx = z.infer<typeof VnicTx>;

export function vnicRxSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.nic.rx`;
}
export function vnicTxSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.nic.tx`;
}
export function anyVnicTxSubject(ns: Namespace): string {
  return anyVm(ns, 'nic.tx');
}
export function anyVnicRxSubject(ns: Namespace): string {
  return anyVm(ns, 'nic.rx');
}
