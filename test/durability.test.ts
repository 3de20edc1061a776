import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RealClock, namespace, waitFor, type ManagementClient } from '@vmsim/shared';
import { DurabilityWorkload, createBusSender, type DurabilityResult } from '@vmsim/client-gen';
import { tempHome } from './helpers/nats.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

/**
 * The durability check end to end: a db VM takes at least 10,000 acknowledged writes while
 * its guest is SIGKILLed several times and the host-agent loses power once; afterwards
 * every acknowledged key reads back. The same check catches a db that acknowledges before
 * flushing (the VM definition's `ackBeforeFlush` teaching toggle).
 *
 * Time scale 1 (simulated = wall): the db serves thousands of PUTs a second through the
 * virtual switch, so 10,000 keys take seconds, not minutes.
 */
const TIME_SCALE = 1;
const HOST = 'host1';

let t: TestStack;
let seq = 0;

beforeAll(async () => {
  t = await startTestStack({ timeScale: TIME_SCALE });
});

afterAll(async () => {
  await t?.stop();
});

async function defineDb(api: ManagementClient, name: string, ackBeforeFlush: boolean): Promise<void> {
  await api.call('define', {
    name,
    app: 'db',
    vcpus: 2,
    memoryMiB: 1024,
    diskGiB: 1,
    crashPolicy: 'restart',
    // A kill more than a second after the last one starts a fresh window: backoff stays 0.5 s.
    maxRestarts: 5,
    restartWindowMs: 1_000,
    ackBeforeFlush,
  });
  await api.call('start', { name });
  await running(api, name, 60_000);
}

async function running(api: ManagementClient, name: string, timeoutMs: number): Promise<number> {
  let pid = 0;
  await waitFor(
    async () => {
      const info = await api.call('info', { name });
      if (info.state === 'failed') throw new Error(`${name} failed: ${info.reason}`);
      pid = info.pid ?? 0;
      return info.state === 'running' && pid > 0;
    },
    timeoutMs,
    `${name} running`,
    50,
  );
  return pid;
}

/** SIGKILLs the guest process of a running VM (as `kill -9` on its qemu); returns the pid killed. */
async function killGuest(api: ManagementClient, name: string): Promise<number> {
  const pid = await running(api, name, 60_000);
  process.kill(pid, 'SIGKILL');
  return pid;
}

function workload(vm: string, o: { targetAcked?: number; maxKeys?: number }): DurabilityWorkload {
  const clock = new RealClock(TIME_SCALE);
  return new DurabilityWorkload({
    vm,
    seed: 'durability-test',
    prefix: `dur/${vm}/${seq++}`,
    clock,
    send: createBusSender(t.nc, namespace(t.ns), HOST, { timeoutMs: 5_000 }),
    concurrency: 48,
    // Long enough to ride out a reboot with its backoff: no key is given up on.
    maxAttempts: 200,
    retryMs: 50,
    maxRetryMs: 500,
    ...o,
  });
}

/** Waits until the workload has this many acknowledged keys (it keeps writing meanwhile). */
async function acked(w: DurabilityWorkload, n: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(() => w.progress().acked >= n, timeoutMs, `${n} acknowledged keys`, 10);
}

/**
 * A power cut: the host-agent dies by SIGKILL (its disks' write caches are gone) and comes
 * back; the guests die with the machine too, so the VM's guest is killed once the host is up.
 */
async function powerCut(vm: string): Promise<void> {
  const r = await t.powerCutHostAgent();
  expect(r.signal).toBe('SIGKILL');
  await killGuest(t.api, vm);
}

function summary(label: string, r: DurabilityResult, kills: number, wallMs: number): string {
  return (
    `${label}: ${r.acked} acked of ${r.written} keys written (${r.attempts} PUTs, failed ${JSON.stringify(r.failedAttempts)}), ` +
    `${kills} guest kills + 1 power cut; lost ${r.lost}, corrupt ${r.corrupt}, unverified ${r.unverified}, ` +
    `unacked ${r.unacked} (landed ${r.unackedLanded}, absent ${r.unackedAbsent}); ${(wallMs / 1000).toFixed(1)} s`
  );
}

describe('durability', () => {
  it('keeps every one of 10,000+ acknowledged writes through guest kills and a host-agent power cut', async () => {
    const t0 = performance.now();
    const vm = 'db-safe';
    await defineDb(t.api, vm, false);
    const w = workload(vm, { targetAcked: 10_000 });
    const writing = w.write();
    let kills = 0;
    const marks: string[] = [`booted@${((performance.now() - t0) / 1000).toFixed(1)}s`];
    // Faults land while 48 writers keep writing: kills mid-group-commit, a cut mid-flush.
    for (const [at, fault] of [
      [2_000, 'kill'],
      [4_000, 'power'],
      [6_000, 'kill'],
      [8_000, 'kill'],
    ] as const) {
      await acked(w, at);
      marks.push(`${fault}@${((performance.now() - t0) / 1000).toFixed(1)}s`);
      if (fault === 'kill') await killGuest(t.api, vm);
      else await powerCut(vm);
      kills++;
    }
    await writing;
    marks.push(`written@${((performance.now() - t0) / 1000).toFixed(1)}s`);
    await running(t.api, vm, 60_000);
    const r = await w.verify(64);
    const info = await t.api.call('info', { name: vm });
    console.log(summary('safe db', r, kills - 1, performance.now() - t0), `restarts ${info.restarts}`, marks.join(' '));
    expect(r.acked).toBeGreaterThanOrEqual(10_000);
    // Three kills and the power cut, each a crash the restart policy recovered from.
    expect(info.restarts).toBeGreaterThanOrEqual(4);
    // The writes really met the faults: some attempts failed and were retried.
    expect(Object.values(r.failedAttempts).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(r.unverified).toBe(0);
    expect(r.corrupt).toBe(0);
    expect(r.lost).toBe(0);
    await t.api.call('destroy', { name: vm });
  }, 180_000);

  it('catches a db that acknowledges before flushing: the power cut loses acknowledged writes', async () => {
    const t0 = performance.now();
    const vm = 'db-unsafe';
    await defineDb(t.api, vm, true);
    expect((await t.api.call('info', { name: vm })).definition.ackBeforeFlush).toBe(true);

    // A guest crash alone loses nothing: the records sit in the host's disk cache, which survives.
    const first = workload(vm, { maxKeys: 1_000 });
    await first.write();
    await killGuest(t.api, vm);
    await running(t.api, vm, 60_000);
    const afterCrash = await first.verify(64);
    expect(afterCrash.acked).toBe(1_000);
    expect(afterCrash.lost).toBe(0);

    // A power cut while acknowledged writes wait for the next background flush loses them.
    const w = workload(vm, { targetAcked: 2_000 });
    const writing = w.write();
    await acked(w, 1_200);
    await powerCut(vm);
    await writing;
    await running(t.api, vm, 60_000);
    const r = await w.verify(64);
    console.log(summary('unsafe db (ackBeforeFlush)', r, 1, performance.now() - t0));
    expect(r.acked).toBeGreaterThanOrEqual(2_000);
    expect(r.unverified).toBe(0);
    expect(r.lost).toBeGreaterThan(0);
  });
});

describe('vmsim run with a durability check', () => {
  it('adds durability {acked, lost} to report.json and report.md for the db VM', async () => {
    const home = tempHome();
    const reportDir = path.join(home, 'report');
    const cli = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));
    const root = fileURLToPath(new URL('..', import.meta.url));
    const args = [cli, 'run', 'scenarios/durability.yaml', '--duration', '2s', '--report', reportDir];
    // The run starts a stack of its own (nats-server, host-agent, hypervisor), as `vmsim run` does.
    const env = { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home };
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('exit', (code) => resolve({ code, out }));
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/durability db1: \d+ acknowledged writes, 0 lost/);
    const report = JSON.parse(fs.readFileSync(path.join(reportDir, 'report.json'), 'utf8')) as {
      verdict: string;
      vms: { name: string; durability?: { acked: number; lost: number; unverified: number } }[];
      slo: { vm: string; metric: string; pass: boolean }[];
    };
    const db1 = report.vms.find((v) => v.name === 'db1')!;
    console.log(`scenario durability db1: ${JSON.stringify(db1.durability)}`);
    expect(db1.durability!.acked).toBeGreaterThan(100);
    expect(db1.durability).toMatchObject({ lost: 0, unverified: 0 });
    expect(report.slo).toContainEqual({ vm: 'db1', metric: 'lostWrites', threshold: 0, actual: 0, pass: true });
    expect(report.verdict).toBe('pass');
    expect(fs.readFileSync(path.join(reportDir, 'report.md'), 'utf8')).toMatch(
      /## Durability[\s\S]*\| db1 \|.*\| held \|/,
    );
  });
});
