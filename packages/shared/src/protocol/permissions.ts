import type { Namespace } from '../subjects.ts';
import { guestControlSubject } from './guest-control.ts';
import { guestStatusSubject } from './guest-status.ts';
import { anyHypervisorReplySubject, hardwareSubjects } from './hardware.ts';
import { heartbeatSubject } from './heartbeat.ts';
import { hypercallSubject } from './hypercall.ts';
import { anyIngressSubject } from './ingress.ts';
import { serviceEventSubject } from './events.ts';
import { anyVm, guestInboxPrefix } from './vm.ts';
import { anyVnicRxSubject, vnicRxSubject, vnicTxSubject } from './vnic.ts';

/**
 * What one bus user may publish and subscribe to (NATS allow-lists; everything else is
 * denied). Every pattern comes from the subject builders, so a subject that moves moves here.
 */
export interface BusPermissions {
  publish: string[];
  subscribe: string[];
}

/** The client library's default inbox prefix, which the trusted services keep using. */
export const DEFAULT_INBOX = '_INBOX';
const anyDefaultInbox = `${DEFAULT_INBOX}.>`;

/**
 * Whether the hypervisor may answer a guest's hypercall on this reply subject: the guest's own
 * inbox, or a tool's `_INBOX.` one (random tokens). Anything else (another VM's subjects, the
 * hypervisor's completions, JetStream's API) would have the hypervisor or the host-agent
 * publish there on the guest's behalf.
 */
export function isGuestReplySubject(reply: string, ns: Namespace, vm: string): boolean {
  return reply.startsWith(`${guestInboxPrefix(ns, vm)}.`) || reply.startsWith(`${DEFAULT_INBOX}.`);
}

/** The bus roles that get credentials of their own. */
export const BUS_ROLES = ['guest', 'host-agent', 'hypervisor', 'management', 'client-gen'] as const;
export type BusRole = (typeof BUS_ROLES)[number];

/**
 * One guest: it calls its hypercalls, beats, reports its status and answers frames on its
 * own subjects, and hears its frames, its control messages and its replies (its own inbox
 * prefix) only. It can neither reach another VM, the host-agent or the management API, nor
 * hear another VM's traffic.
 */
export function guestPermissions(ns: Namespace, vm: string): BusPermissions {
  return {
    publish: [hypercallSubject(ns, vm), heartbeatSubject(ns, vm), guestStatusSubject(ns, vm), vnicTxSubject(ns, vm)],
    subscribe: [vnicRxSubject(ns, vm), guestControlSubject(ns, vm), `${guestInboxPrefix(ns, vm)}.>`],
  };
}

/**
 * The host-agent serves its host's hardware subjects and answers where the hypervisor tells
 * it to: the hypervisor's completion subjects, a guest's inbox (hypercall replies), a guest's
 * vNIC (frames), a client's inbox (replies that left the vNIC).
 */
export function hostAgentPermissions(ns: Namespace, host: string): BusPermissions {
  return {
    publish: [
      hardwareSubjects.all(ns, host),
      anyHypervisorReplySubject(ns, host),
      anyVm(ns, 'inbox.>'),
      anyVnicRxSubject(ns),
      anyDefaultInbox,
      // Its own service events (a bus reconnect).
      serviceEventSubject(ns, host, 'host-agent'),
    ],
    subscribe: [hardwareSubjects.all(ns, host), anyDefaultInbox],
  };
}

/**
 * The hypervisor mediates everything in its namespace, and it holds the key that signs every
 * other user, so a narrower list would confine nothing; '>' also leaves it room for JetStream.
 */
export function hypervisorPermissions(): BusPermissions {
  return { publish: ['>'], subscribe: ['>'] };
}

/** The management API's clients (the CLI, `vmsim run`, tests): the whole namespace and JetStream's API. */
export function managementPermissions(ns: Namespace): BusPermissions {
  const all = `${ns}.>`;
  return { publish: [all, anyDefaultInbox, '$JS.API.>'], subscribe: [all, anyDefaultInbox] };
}

/** client-gen is the outside world: it sends requests into the host's virtual switch and hears its replies. */
export function clientGenPermissions(ns: Namespace, host: string): BusPermissions {
  return {
    publish: [anyIngressSubject(ns, host), anyDefaultInbox, serviceEventSubject(ns, host, 'client-gen')],
    subscribe: [anyDefaultInbox],
  };
}

/** The permissions of a trusted role (a guest's are per VM: guestPermissions). */
export function servicePermissions(role: Exclude<BusRole, 'guest'>, ns: Namespace, host: string): BusPermissions {
  switch (role) {
    case 'host-agent':
      return hostAgentPermissions(ns, host);
    case 'hypervisor':
      return hypervisorPermissions();
    case 'management':
      return managementPermissions(ns);
    case 'client-gen':
      return clientGenPermissions(ns, host);
  }
}
