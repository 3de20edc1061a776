import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';

/**
 * Everything one guest may publish or subscribe to lives under `<ns>.vm.<id>.`, its inbox
 * included (its exact allow-lists: guestPermissions in permissions.ts).
 */
export function vmPrefix(ns: Namespace, vmId: string): string {
  return `${ns}.vm.${token(vmId, 'vm id')}`;
}

/** The inbox prefix a guest's connection must use for request/reply. */
export function guestInboxPrefix(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.inbox`;
}

/** All guests' subjects of one family, for the hypervisor's and host-agent's subscriptions. */
export function anyVm(ns: Namespace, suffix: string): string {
  return `${ns}.vm.*.${suffix}`;
}

/** The vm id inside a subject under `<ns>.vm.<id>.`; undefined when it is not one. */
export function vmIdOf(ns: Namespace, subject: string): string | undefined {
  const head = `${ns}.vm.`;
  if (!subject.startsWith(head)) return undefined;
  const rest = subject.slice(head.length);
  const dot = rest.indexOf('.');
  return dot > 0 ? rest.slice(0, dot) : undefined;
}
