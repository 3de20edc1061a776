import { describe, expect, it } from 'vitest';
import { ErrorCode } from './errors.ts';
import { namespace, token } from './subjects.ts';
import { guestInboxPrefix, vmIdOf } from './protocol/vm.ts';
import {
  clientGenPermissions,
  guestPermissions,
  hostAgentPermissions,
  managementPermissions,
} from './protocol/permissions.ts';
import { hypercallSubject, anyHypercallSubject } from './protocol/hypercall.ts';
import { heartbeatSubject } from './protocol/heartbeat.ts';
import { vnicRxSubject, vnicTxSubject } from './protocol/vnic.ts';
import { guestStatusSubject } from './protocol/guest-status.ts';
import { guestControlSubject } from './protocol/guest-control.ts';
import { hardwareSubjects } from './protocol/hardware.ts';
import { mgmtSubject } from './protocol/mgmt.ts';
import { ingressSubject, ingressVmName } from './protocol/ingress.ts';

/** NATS subject matching, to check that allow-lists cover exactly what they should. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

describe('subjects', () => {
  const ns = namespace('vmsim.t1');

  it('rejects tokens that would change a subject', () => {
    for (const bad of ['a.b', 'a*', '>', 'a b', '', 'x'.repeat(65)]) {
      expect(() => token(bad, 'vm id')).toThrow(expect.objectContaining({ code: ErrorCode.BAD_SUBJECT_TOKEN }));
    }
    expect(() => namespace('a..b')).toThrow();
    expect(() => hypercallSubject(ns, 'web.1')).toThrow(/vm id/);
  });

  it('lets a guest use exactly its own subjects, each in its own direction', () => {
    const allow = guestPermissions(ns, 'web1');
    const pub = (s: string): boolean => allow.publish.some((p) => matches(p, s));
    const sub = (s: string): boolean => allow.subscribe.some((p) => matches(p, s));
    for (const s of [
      hypercallSubject(ns, 'web1'),
      heartbeatSubject(ns, 'web1'),
      vnicTxSubject(ns, 'web1'),
      guestStatusSubject(ns, 'web1'),
    ])
      expect(pub(s), s).toBe(true);
    for (const s of [
      vnicRxSubject(ns, 'web1'),
      guestControlSubject(ns, 'web1'),
      `${guestInboxPrefix(ns, 'web1')}.abc.1`,
    ])
      expect(sub(s), s).toBe(true);
    // Its own inbound subjects are not for it to publish on (no spoofed frames or commands).
    for (const s of [vnicRxSubject(ns, 'web1'), guestControlSubject(ns, 'web1'), `${guestInboxPrefix(ns, 'web1')}.x`])
      expect(pub(s), s).toBe(false);
    const foreign = [
      hypercallSubject(ns, 'web2'),
      heartbeatSubject(ns, 'web2'),
      vnicRxSubject(ns, 'web2'),
      vnicTxSubject(ns, 'web2'),
      `${guestInboxPrefix(ns, 'web2')}.abc.1`,
      hardwareSubjects.cpu(ns, 'host1'),
      mgmtSubject(ns, 'host1', 'destroy'),
      ingressSubject(ns, 'host1', 'web1'),
      hypercallSubject(namespace('other'), 'web1'),
      '_INBOX.abc',
    ];
    for (const s of foreign) {
      expect(pub(s), s).toBe(false);
      expect(sub(s), s).toBe(false);
    }
    for (const p of [...allow.publish, ...allow.subscribe]) expect(p.startsWith(`${ns}.vm.web1.`), p).toBe(true);
    expect(matches(anyHypercallSubject(ns), hypercallSubject(ns, 'web9'))).toBe(true);
  });

  it('keeps the host-agent to its host and client-gen to the virtual switch', () => {
    const ha = hostAgentPermissions(ns, 'host1');
    const can = (list: string[], s: string): boolean => list.some((p) => matches(p, s));
    expect(can(ha.subscribe, hardwareSubjects.cpu(ns, 'host1'))).toBe(true);
    expect(can(ha.publish, `${guestInboxPrefix(ns, 'web1')}.abc.1`)).toBe(true);
    expect(can(ha.publish, vnicRxSubject(ns, 'web1'))).toBe(true);
    expect(can(ha.subscribe, hardwareSubjects.cpu(ns, 'host2'))).toBe(false);
    expect(can(ha.publish, mgmtSubject(ns, 'host1', 'destroy'))).toBe(false);
    expect(can(ha.publish, guestControlSubject(ns, 'web1'))).toBe(false);
    const cg = clientGenPermissions(ns, 'host1');
    expect(can(cg.publish, ingressSubject(ns, 'host1', 'web1'))).toBe(true);
    expect(can(cg.publish, mgmtSubject(ns, 'host1', 'destroy'))).toBe(false);
    expect(can(cg.publish, hypercallSubject(ns, 'web1'))).toBe(false);
    const mg = managementPermissions(ns);
    expect(can(mg.publish, mgmtSubject(ns, 'host1', 'destroy'))).toBe(true);
    expect(can(mg.publish, mgmtSubject(namespace('other'), 'host1', 'destroy'))).toBe(false);
  });

  it('reads ids back out of subjects', () => {
    expect(vmIdOf(ns, hypercallSubject(ns, 'db-3'))).toBe('db-3');
    expect(vmIdOf(ns, 'elsewhere.vm.x.hc')).toBeUndefined();
    expect(ingressVmName(ingressSubject(ns, 'host1', 'web7'))).toBe('web7');
  });
});
