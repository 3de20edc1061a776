import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface FaultJson {
  vm: string;
  kind: string;
  infra?: boolean;
  injectedMs: number;
  detectedBy: string | null;
  mttdMs: number | null;
  mttrMs: number | null;
  neighbours: { vm: string; requests: number; errors: number }[];
}

/**
 * A chaos scenario end to end through `vmsim run`: a guest killed, then the host-agent's
 * power cut, on a stack of the run's own. The report must time each fault's detection and
 * recovery from the events and the clients' requests, judge the neighbour while the VM fault
 * lasts, and fail the run when recovery misses its objective.
 */
describe('vmsim run: a chaos scenario', () => {
  const scenario = (mttrMs: string) => `
name: chaos-test
seed: 5
duration: 8s
timeScale: 2
clientTimeout: 1s
vms:
  - { name: web1, app: web, memoryMiB: 512, diskGiB: 1, crashPolicy: restart }
  - { name: web2, app: web, memoryMiB: 512, diskGiB: 1 }
load:
  - { vm: web1, model: closed, users: 3, thinkMs: 20ms }
  - { vm: web2, model: closed, users: 3, thinkMs: 20ms }
timeline:
  - { at: 1s, fault: kill, vm: web1 }
  - { at: 5s, infra: host-agent-power-cut }
slo:
  errorRate: 0.05
  perVm: { web1: { errorRate: 1 } }
  faults: { mttdMs: 2s, mttrMs: ${mttrMs} }
`;

  it('reports MTTD and MTTR for a VM fault and an infrastructure fault, and the neighbour meanwhile', () => {
    const home = tempHome();
    const file = path.join(home, 'chaos.yaml');
    fs.writeFileSync(file, scenario('5s'));
    const reportDir = path.join(home, 'report');
    const r = spawnSync(process.execPath, [CLI, 'run', file, '--report', reportDir], {
      cwd: ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const report = JSON.parse(fs.readFileSync(path.join(reportDir, 'report.json'), 'utf8')) as {
      verdict: string;
      faults: FaultJson[];
      slo: { metric: string; pass: boolean }[];
    };
    expect(report.verdict).toBe('pass');
    const [kill, cut] = report.faults;
    expect(kill).toMatchObject({ vm: 'web1', kind: 'kill' });
    expect(kill!.detectedBy).toMatch(/SIGKILL/);
    // A SIGKILL is seen at once (the process exits); serving again takes a reboot.
    expect(kill!.mttdMs!).toBeLessThan(200);
    expect(kill!.mttrMs!).toBeGreaterThan(kill!.mttdMs!);
    expect(kill!.mttrMs!).toBeLessThan(3000);
    const web2 = kill!.neighbours.find((n) => n.vm === 'web2')!;
    expect(web2.requests).toBeGreaterThan(0);
    expect(web2.errors).toBe(0);
    expect(cut).toMatchObject({ vm: 'host-agent', kind: 'host-agent-power-cut', infra: true });
    expect(cut!.detectedBy).toMatch(/host-agent-restarted/);
    expect(cut!.mttrMs!).toBeGreaterThanOrEqual(cut!.mttdMs!);
    expect(report.slo.filter((s) => s.metric === 'mttrMs')).toHaveLength(2);
    expect(fs.readFileSync(path.join(reportDir, 'report.md'), 'utf8')).toMatch(/## Faults/);
    expect(r.stdout).toMatch(/fault kill web1 at \d+ ms: detected after/);
  });
});
