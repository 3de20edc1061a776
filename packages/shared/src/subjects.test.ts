import { describe, expect, it } from 'vitest';
import { ErrorCode } from './errors.ts';
import { namespace, token } from './subjects.ts';
import { guestAllowList, guestInboxPrefix, vmIdOf } from './protocol/vm.ts';
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

  it('puts everything a guest uses under one prefix that one allow-list entry covers', () => {
    const allow = guestAllowList(ns, 'web1');
    const own = [
      hypercallSubject(ns, 'web1'),
      heartbeatSubject(ns, 'web1'),
      vnicRxSubject(ns, 'web1'),
      vnicTxSubject(ns, 'web1'),
      guestStatusSubject(ns, 'web1'),
      guestControlSubject(ns, 'web1'),
      `${guestInboxPrefix(ns, 'web1')}.abc.1`,
    ];
    for (const s of own)
      expect(
        allow.publish.some((p) => matches(p, s)),
        s,
      ).toBe(true);
    const foreign = [
      hypercallSubject(ns, 'web2'),
      `${guestInboxPrefix(ns, 'web2')}.abc.1`,
      hardwareSubjects.cpu(ns, 'host1'),
      mgmtSubject(ns, 'host1', 'destroy'),
      ingressSubject(ns, 'host1', 'web1'),
      hypercallSubject(namespace('other'), 'web1'),
    ];
    for (const s of foreign)
      expect(
        allow.publish.some((p) => matches(p, s)),
        s,
      ).toBe(false);
    expect(allow.publish).toHaveLength(1);
    expect(matches(anyHypercallSubject(ns), hypercallSubject(ns, 'web9'))).toBe(true);
  });

  it('reads ids back out of subjects', () => {
    expect(vmIdOf(ns, hypercallSubject(ns, 'db-3'))).toBe('db-3');
    expect(vmIdOf(ns, 'elsewhere.vm.x.hc')).toBeUndefined();
    expect(ingressVmName(ingressSubject(ns, 'host1', 'web7'))).toBe('web7');
  });
});
