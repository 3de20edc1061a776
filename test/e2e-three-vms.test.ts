import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  HypercallReply,
  ManagementClient,
  RealClock,
  RandomStreams,
  decode,
  encode,
  hypercallSubject,
  namespace,
  waitFor,
  type NatsConnection,
  type VmInfo,
} from '@vmsim/shared';
import { OpenLoop, createBusSender, type Summary } from '@vmsim/client-gen';
import type { Stack } from '@vmsim/cli';
import { EventLog } from './helpers/events.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;
const VMS = ['web1', 'web2', 'web3'];

describe('a host with three web VMs, end to end', () => {
  let t: TestStack;
  let stack: Stack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let events: EventLog;
  let ns: string;

  beforeAll(async () => {
    t = await startTestStack({
      timeScale: TIME_SCALE,
      env: { VMSIM_HEARTBEAT_MS: '250', VMSIM_WATCHDOG_MS: '5000' },
      logLevel: 'info',
    });
    ({ nc, api, ns, stack } = t);
    events = new EventLog(nc, ns, 'host1');
  });

  afterAll(async () => {
    await t?.stop();
  });

  async function drive(vms: string[], durationMs: number, ratePerS = 40): Promise<Summary> {
    const clock = new RealClock(TIME_SCALE);
    return new OpenLoop({
      clock,
      rng: new RandomStreams('e2e').stream(`load-${vms.join('-')}-${durationMs}`),
      targets: vms.map((vm) => ({ vm, ratePerS, arrival: 'poisson', mix: { GET: 8, POST: 2 } })),
      durationMs,
      timeoutMs: 5_000,
      send: createBusSender(nc, namespace(ns), 'host1', { timeoutMs: clock.toWall(5_000) + 1_000 }),
    }).run();
  }

  const info = (name: string): Promise<VmInfo> => api.call('info', { name });

  it('defines and boots three VMs, each its own guest process', async () => {
    for (const name of VMS) {
      await api.call('define', { name, app: 'web', os: 'linux', memoryMiB: 512, diskGiB: 1 });
      await api.call('start', { name });
    }
    for (const name of VMS) await events.waitFor(name, 'running', 60_000);
    const infos = await Promise.all(VMS.map(info));
    const pids = infos.map((i) => i.pid);
    expect(new Set(pids).size).toBe(3);
    for (const i of infos) {
      expect(i.state).toBe('running');
      expect(i.pid).not.toBe(stack.pids.hypervisor);
      expect(() => process.kill(i.pid!, 0)).not.toThrow();
      expect(i.bootMs).toBeGreaterThan(0);
      // Booting read the OS image and installed the site through hypercalls.
      expect(i.hypercalls.byOp['disk.read']!.count).toBeGreaterThan(10);
      expect(i.hypercalls.byOp['disk.write']!.count).toBeGreaterThan(0);
    }
    // Every transition was published with a reason.
    for (const name of VMS) {
      const path = events.events.filter((e) => e.vm === name).map((e) => e.to);
      expect(path).toEqual(['defined', 'starting', 'running']);
    }
  });

  it('serves client load on every VM with no errors', async () => {
    const before = await Promise.all(VMS.map(info));
    const s = await drive(VMS, 3_000);
    for (const t of s.targets) {
      expect(t.errorCount, `${t.vm} errors ${JSON.stringify(t.errors)}`).toBe(0);
      expect(t.timeouts).toBe(0);
      expect(t.ok).toBeGreaterThan(60);
      expect(t.status['200']).toBeGreaterThan(0);
    }
    const after = await Promise.all(VMS.map(info));
    for (const [i, a] of after.entries()) {
      const served = s.targets.find((t) => t.vm === a.name)!.ok;
      // Each request cost its own guest at least one CPU hypercall: the work was done where it was sent.
      expect(a.hypercalls.byOp['cpu']!.count - before[i]!.hypercalls.byOp['cpu']!.count).toBeGreaterThanOrEqual(served);
      expect(a.net.requests - before[i]!.net.requests).toBe(served);
    }
  });

  it('answers malformed and schema-invalid hypercalls with error codes while the others are served', async () => {
    const subject = hypercallSubject(namespace(ns), 'web1');
    const bad = [
      { bytes: new Uint8Array([0x92, 0x01]), code: ErrorCode.BAD_PAYLOAD },
      { bytes: new Uint8Array(0), code: ErrorCode.BAD_PAYLOAD },
      { bytes: encode({ op: 'cpu', cycles: -1 }), code: ErrorCode.SCHEMA },
      { bytes: encode({ op: 'format-disk' }), code: ErrorCode.SCHEMA },
      { bytes: encode({ op: 'disk.read', disk: 0, offset: 2 ** 40, length: 4096 }), code: ErrorCode.OUT_OF_RANGE },
      { bytes: encode({ op: 'disk.read', disk: 3, offset: 0, length: 4096 }), code: ErrorCode.NO_SUCH_DEVICE },
    ];
    const rejectedBefore = (await info('web1')).hypercalls.rejected;
    const load = drive(['web2', 'web3'], 2_000);
    for (let round = 0; round < 20; round++) {
      for (const b of bad) {
        const reply = decode((await nc.request(subject, b.bytes, { timeout: 5000 })).data, HypercallReply);
        expect(reply.ok).toBe(false);
        expect(!reply.ok && reply.code, JSON.stringify(reply)).toBe(b.code);
      }
    }
    const s = await load;
    for (const t of s.targets) expect(t.errorCount + t.timeouts).toBe(0);
    expect((await info('web1')).hypercalls.rejected - rejectedBefore).toBe(20 * 4);
    const after = await drive(['web1'], 1_000);
    expect(after.targets[0]!.errorCount).toBe(0);
  });

  it('notices a killed guest: only its VM is crashed, the others keep serving', async () => {
    const victim = await info('web2');
    const before = await Promise.all(['web1', 'web3'].map(info));
    process.kill(victim.pid!, 'SIGKILL');
    const crash = await events.waitFor('web2', 'crashed', 10_000);
    expect(crash.reason).toMatch(/SIGKILL/);
    const now = await Promise.all(VMS.map(info));
    expect(now.map((i) => i.state)).toEqual(['running', 'crashed', 'running']);
    expect(now[1]!.pid).toBeNull();
    for (const [i, b] of before.entries()) expect(now[i === 0 ? 0 : 2]!.pid).toBe(b.pid);

    const s = await drive(VMS, 2_000);
    const by = Object.fromEntries(s.targets.map((t) => [t.vm, t]));
    expect(by['web1']!.errorCount + by['web1']!.timeouts).toBe(0);
    expect(by['web3']!.errorCount + by['web3']!.timeouts).toBe(0);
    expect(by['web1']!.ok).toBeGreaterThan(40);
    expect(by['web2']!.ok).toBe(0);
    expect(by['web2']!.errors[ErrorCode.VM_NOT_RUNNING]).toBe(by['web2']!.sent);
    // The survivors' hypercall counts grew with their own work; the crashed guest's did not.
    const after = await Promise.all(VMS.map(info));
    expect(after[1]!.hypercalls.total).toBe(now[1]!.hypercalls.total);
    expect(after[0]!.hypercalls.total).toBeGreaterThan(now[0]!.hypercalls.total + by['web1']!.ok);
    expect(after[2]!.hypercalls.total).toBeGreaterThan(now[2]!.hypercalls.total + by['web3']!.ok);
  });

  it('restarts the crashed VM, shuts one down gracefully and destroys another', async () => {
    await api.call('start', { name: 'web2' });
    await waitFor(async () => (await info('web2')).state === 'running', 60_000, 'web2 running again');
    // Its site is still on its virtual disk: the restart did not reinstall it.
    const s = await drive(['web2'], 1_000);
    expect(s.targets[0]!.errorCount).toBe(0);

    const pid3 = (await info('web3')).pid!;
    await api.call('shutdown', { name: 'web3' });
    const stopped = await events.waitFor('web3', 'stopped', 20_000);
    expect(stopped.reason).toMatch(/cleanly/);
    await waitFor(() => !isAlive(pid3), 5_000, 'web3 process gone');

    const pid1 = (await info('web1')).pid!;
    const d = await api.call('destroy', { name: 'web1' });
    expect(d.state).toBe('stopped');
    await waitFor(() => !isAlive(pid1), 5_000, 'web1 process gone');
    await expect(api.call('destroy', { name: 'web1' })).rejects.toMatchObject({ code: ErrorCode.BAD_STATE });
    await expect(api.call('start', { name: 'nope' })).rejects.toMatchObject({ code: ErrorCode.NO_SUCH_VM });
  });

  it('refuses a VM that does not fit in host memory, with a clear error', async () => {
    await api.call('define', { name: 'huge', memoryMiB: 40_000, diskGiB: 1 });
    await expect(api.call('start', { name: 'huge' })).rejects.toMatchObject({
      code: ErrorCode.NO_MEMORY,
      message: expect.stringMatching(/VM huge needs 40000 MiB but only \d+ MiB/),
    });
    expect((await info('huge')).state).toBe('defined');
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
