import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import {
  ManagementClient,
  ServiceEvent,
  anyEventSubject,
  decode,
  namespace,
  waitFor,
  type NatsConnection,
  type VmInfo,
} from '@vmsim/shared';
import { createBusSender } from '@vmsim/client-gen';
import type { InfraFaultResult } from '@vmsim/cli';
import { EventLog } from './helpers/events.ts';
import { Prober, recoveredAt } from './helpers/probe.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;
const VMS = ['web1', 'web2'];

/**
 * Infrastructure faults under client load: the host-agent loses power, the hypervisor is
 * SIGKILLed, nats-server restarts. After each, both web VMs serve again (time to serve again
 * measured from the client side) and keep the guest processes they had.
 */
describe('infrastructure faults: host-agent power cut, hypervisor crash, NATS restart', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let events: EventLog;
  let prober: Prober;
  const svcEvents: ServiceEvent[] = [];
  const mttr: Record<string, number> = {};

  beforeAll(async () => {
    t = await startTestStack({
      timeScale: TIME_SCALE,
      env: { VMSIM_HEARTBEAT_MS: '250', VMSIM_WATCHDOG_MS: '5000' },
      logLevel: 'info',
    });
    // The test's own client reconnects for ever and fast, as the services do.
    nc = await connect({ servers: t.nats.url, ...t.nats.auth, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    api = new ManagementClient(nc, namespace(t.ns), 'host1', 5_000);
    events = new EventLog(nc, t.ns, 'host1');
    nc.subscribe(anyEventSubject(namespace(t.ns)), {
      callback: (_e, m) => {
        if (m.subject.includes('.svc.')) svcEvents.push(decode(m.data, ServiceEvent, 'service event'));
      },
    });
    for (const name of VMS) {
      await api.call('define', { name, app: 'web', os: 'linux', memoryMiB: 512, diskGiB: 1, crashPolicy: 'restart' });
      await api.call('start', { name });
    }
    for (const name of VMS) await events.waitFor(name, 'running', 60_000);
    const send = createBusSender(nc, namespace(t.ns), 'host1', { timeoutMs: 2_000 });
    prober = new Prober(send, VMS, { app: 'web', op: 'GET', path: '/index.html', bytes: 400 }, 100);
    await waitFor(() => VMS.every((vm) => prober.successesSince(vm, 0) >= 3), 30_000, 'both VMs to serve');
  });

  afterAll(async () => {
    await prober?.stop();
    if (Object.keys(mttr).length > 0) console.log(`MTTR (ms, client side): ${JSON.stringify(mttr)}`);
    await nc?.close();
    await t?.stop();
  });

  const list = async (): Promise<VmInfo[]> => (await api.call('list', {})).vms;

  /** Waits until every VM served again after the fault; returns the slowest VM's time to serve again. */
  async function serveAgain(r: InfraFaultResult): Promise<number> {
    const settled = Date.now();
    // Serving again means: successes sent after the service came back, none failing since.
    await waitFor(
      () =>
        VMS.every((vm) => prober.successesSince(vm, settled) >= 5 && prober.failuresSince(vm, settled).length === 0),
      30_000,
      `both VMs to serve again after ${r.target} ${r.action}`,
      50,
    ).catch((e: unknown) => {
      const failed = VMS.map((vm) => `${vm}: ${JSON.stringify(prober.failuresSince(vm, settled).slice(-3))}`);
      throw new Error(`${(e as Error).message}; last failures ${failed.join('; ')}`);
    });
    const times = VMS.map((vm) => recoveredAt(prober.records, vm, r.injectedAt));
    for (const at of times) expect(at).toBeDefined();
    return Math.max(...times.map((at) => at! - r.injectedAt));
  }

  it('host-agent power cut: the hypervisor takes the new host-agent back, the VMs serve again', async () => {
    const before = await list();
    const bootBefore = (await api.call('ping', {})).hostAgent.bootId;
    const r = await t.powerCutHostAgent();
    expect(r.signal).toBe('SIGKILL');
    expect(r.newPid).not.toBe(r.oldPid);
    expect((await api.call('ping', {})).hostAgent.bootId).not.toBe(bootBefore);
    mttr['host-agent power cut'] = await serveAgain(r);
    // The guests lived through it: same processes, still running.
    const after = await list();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name)!;
      expect(now.state).toBe('running');
      expect(now.pid).toBe(vm.pid);
    }
    expect(svcEvents.some((e) => e.kind === 'host-agent-restarted')).toBe(true);
  });

  it('hypervisor SIGKILL and restart: the guests are re-adopted (same pids), serve again, definitions intact', async () => {
    const before = await list();
    const r = await t.restartHypervisor();
    expect(r.signal).toBe('SIGKILL');
    expect(r.newPid).not.toBe(r.oldPid);
    const after = await list();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name)!;
      expect(now.state).toBe('running');
      expect(now.pid).toBe(vm.pid);
      expect(now.uuid).toBe(vm.uuid);
      expect(now.definition).toEqual(vm.definition);
      // The same volume and placement; its I/O counters, like the hypercall ones, start again.
      const placement = (d: typeof vm.disks) => d.map((x) => ({ ...x, volume: { ...x.volume, io: undefined } }));
      expect(placement(now.disks)).toEqual(placement(vm.disks));
      expect(now.reason).toMatch(/re-adopted running guest pid \d+/);
    }
    mttr['hypervisor crash-restart'] = await serveAgain(r);
    // Heartbeats reach the new hypervisor: the watchdog leaves them alone.
    await waitFor(
      async () => (await list()).every((v) => v.lastHeartbeatAgoMs !== null && v.lastHeartbeatAgoMs < 2_000),
      10_000,
      'heartbeats from the re-adopted guests',
    );
    expect(svcEvents.some((e) => e.kind === 'adoption' && /2 adopt/.test(e.reason))).toBe(true);
  });

  it('nats-server restart on the same port: every service reconnects, the VMs serve again', async (ctx) => {
    // A NATS container cannot come back on the same host port: CI's binary pass runs this one.
    if (t.nats.kind === 'container') return ctx.skip();
    const before = await list();
    const r = await t.restartNats();
    expect(r.newPid).not.toBe(r.oldPid);
    mttr['nats restart'] = await serveAgain(r);
    const after = await list();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name)!;
      expect(now.state).toBe('running');
      expect(now.pid).toBe(vm.pid);
    }
    // Each said so in its log (its event may go out before our own client is back to hear it).
    for (const log of [t.stack.logs.hostAgent, t.stack.logs.hypervisor]) {
      expect(fs.readFileSync(log, 'utf8')).toMatch(/bus connection lost for \d+ ms, reconnected/);
    }
  });

  it('a NATS outage longer than the watchdog timeout resets no guest (their silence was the bus)', async (ctx) => {
    if (t.nats.kind === 'container') return ctx.skip();
    const before = await list();
    // 6 s down, the watchdog fires after 5 s of silence.
    const r = await t.restartNats({ downMs: 6_000 });
    mttr['nats down 6 s'] = await serveAgain(r);
    const after = await list();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name)!;
      expect(now.state).toBe('running');
      expect(now.pid).toBe(vm.pid);
    }
    expect(events.events.filter((e) => e.t >= r.injectedAt && e.kind === 'watchdog')).toEqual([]);
  });

  it('a guest that dies while the hypervisor is down is marked crashed with the reason, and its crash policy restarts it', async () => {
    const before = await list();
    const victim = before.find((v) => v.name === 'web2')!;
    const infra = t.stack.infra();
    const t0 = Date.now();
    await infra.hypervisor.kill('SIGKILL', 5_000);
    process.kill(victim.pid!, 'SIGKILL');
    await infra.hypervisor.start();
    await waitFor(
      async () => {
        try {
          const v = (await list()).find((x) => x.name === 'web2')!;
          return v.state === 'running' && v.pid !== victim.pid;
        } catch {
          return false;
        }
      },
      30_000,
      'web2 to be restarted by its crash policy',
      100,
    );
    const crashed = events.events.find((e) => e.vm === 'web2' && e.to === 'crashed' && e.t >= t0);
    expect(crashed?.reason).toMatch(new RegExp(`pid ${victim.pid} is gone: it died while the hypervisor was down`));
    // web1 lived through it and was re-adopted.
    const web1 = (await list()).find((v) => v.name === 'web1')!;
    expect(web1.pid).toBe(before.find((v) => v.name === 'web1')!.pid);
    mttr['hypervisor crash + guest died meanwhile (web2 rebooted)'] = await serveAgain({
      target: 'hypervisor',
      action: 'restart',
      signal: 'SIGKILL',
      injectedAt: t0,
      downMs: 0,
      oldPid: null,
      newPid: null,
    });
  });

  it('graceful hypervisor restart: the guests are powered off, and the new hypervisor boots them again', async () => {
    const before = await list();
    const r = await t.restartHypervisor({ graceful: true });
    expect(r.signal).toBe('SIGTERM');
    await waitFor(
      async () => (await list()).every((v) => v.state === 'running'),
      30_000,
      'both VMs to boot again',
      100,
    );
    const after = await list();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name)!;
      expect(now.pid).not.toBe(vm.pid);
      expect(() => process.kill(vm.pid!, 0)).toThrow();
    }
    const powered = events.events.filter((e) => e.t >= r.injectedAt && e.to === 'starting');
    expect(powered.map((e) => e.reason)).toContain("powered off by the previous hypervisor's shutdown: started again");
    mttr['graceful hypervisor restart (guests rebooted)'] = await serveAgain(r);
  });
});
