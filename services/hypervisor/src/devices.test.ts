import { describe, expect, it } from 'vitest';
import {
  VirtualClock,
  createLogger,
  decode,
  ErrorReply,
  namespace,
  type HardwareProfile,
  type NatsConnection,
} from '@vmsim/shared';
import { HostDevices } from './devices.ts';

const profile: HardwareProfile = {
  name: 't',
  description: 't',
  source: 't',
  cpu: { model: 'c', sockets: 1, coresPerSocket: 1, mhz: 1000 },
  memoryGiB: 1,
  disks: [
    {
      id: 'd0',
      model: 'd',
      kind: 'ssd',
      capacityGiB: 1,
      iops: 1000,
      bandwidthMBps: 100,
      latencyMs: 0.1,
      queueDepth: 1,
      writeCacheMiB: 0,
    },
  ],
  nics: [{ id: 'n0', model: 'n', gbps: 1, latencyMs: 0.1, ring: 1 }],
};

function devices() {
  const sent: { subject: string; data: Uint8Array }[] = [];
  const nc = {
    publish: (subject: string, data: Uint8Array) => void sent.push({ subject, data }),
  } as unknown as NatsConnection;
  const d = new HostDevices({
    nc,
    ns: namespace('t'),
    host: 'h',
    clock: new VirtualClock(),
    policy: 'fair',
    profile,
    logger: createLogger({ svc: 'test', host: 'h', level: 'silent' }),
    events: { dispatched: () => undefined, failed: () => undefined },
  });
  return { d, sent };
}

describe('device completions', () => {
  it('a completion naming another device frees nothing; the right one frees the slot for the next request', () => {
    const { d, sent } = devices();
    const job = { subject: d.subjects.cpu, kind: 'cpu', body: {} };
    d.cpu.submit('a', 1, job);
    d.cpu.submit('a', 1, job);
    expect(d.inFlightCount).toBe(1);
    expect(d.queuedCount).toBe(1);
    // Ticket 1 went to the cpu: a stray completion for it from a disk or an unknown device is ignored.
    expect(d.onDone(1, true, 'disk.d0')).toBe(false);
    expect(d.onDone(1, false, 'x'.repeat(64))).toBe(false);
    expect(d.onDone(999, true, 'cpu')).toBe(false);
    expect(d.inFlightCount).toBe(1);
    expect(d.queuedCount).toBe(1);
    expect(d.onDone(1, true, 'cpu')).toBe(true);
    // The queued request went out as ticket 2; a second completion for ticket 1 changes nothing.
    expect(sent).toHaveLength(2);
    expect(d.onDone(1, true, 'cpu')).toBe(false);
    expect(d.inFlightCount).toBe(1);
    expect(d.queuedCount).toBe(0);
    expect(d.onDone(2, true, 'cpu')).toBe(true);
    expect(d.inFlightCount).toBe(0);
  });
});

describe('releasing lost device work', () => {
  it("answers each lost guest hypercall with HOST_UNAVAILABLE at once, and not the VMM's own work", () => {
    const { d, sent } = devices();
    d.cpu.submit('a', 1, { subject: d.subjects.cpu, kind: 'cpu', body: { replyTo: 't.vm.a.inbox.1' } });
    d.nic.tx.submit('b', 1, { subject: d.subjects.nic.tx, kind: 'net.send', body: { replyTo: 't.vm.b.inbox.7' } });
    d.diskScheduler('d0').submit('a', 1, { subject: 'x', kind: 'host', body: { replyTo: 'host.work' } });
    const before = sent.length;
    expect(d.releaseAll('the host-agent restarted')).toBe(3);
    const replies = sent.slice(before);
    expect(replies.map((r) => r.subject).sort()).toEqual(['t.vm.a.inbox.1', 't.vm.b.inbox.7']);
    for (const r of replies) {
      const e = decode(r.data, ErrorReply, 'reply');
      expect(e.code).toBe('VMSIM_ERR_HOST_UNAVAILABLE');
      expect(e.message).toContain('the host-agent restarted');
    }
    expect(d.inFlightCount).toBe(0);
  });
});
