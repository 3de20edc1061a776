import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function vmsim(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home },
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface ReportJson {
  scenario: string;
  seed: number;
  verdict: string;
  host: { hypervisor: string; scheduler: string; timeScale: number };
  vms: {
    name: string;
    app: string;
    os: string;
    pid: number;
    state: string;
    restarts: number;
    requests: number;
    errors: number;
    hypercalls: number;
    throughputPerS: number;
    latencyMs: { p50: number; p90: number; p99: number; max: number };
  }[];
  fidelity: { maxEventLoopLagMs: number; degraded: boolean };
}

describe('vmsim run', () => {
  it('runs the demo scenario: all five kinds served, each guest its own process, no errors, reports written', () => {
    const home = tempHome();
    const reportDir = path.join(home, 'report');
    const r = vmsim(home, [
      'run',
      'scenarios/demo.yaml',
      '--duration',
      '2s',
      '--time-scale',
      '2',
      '--report',
      reportDir,
    ]);
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.out).toMatch(/verdict: PASS/);
    const report = JSON.parse(fs.readFileSync(path.join(reportDir, 'report.json'), 'utf8')) as ReportJson;
    expect(report).toMatchObject({
      scenario: 'demo',
      seed: 42,
      verdict: 'pass',
      host: { hypervisor: 'type1', scheduler: 'fair', timeScale: 2 },
    });
    expect(report.vms.map((v) => v.app).sort()).toEqual(['db', 'file', 'game', 'mail', 'web']);
    expect(new Set(report.vms.map((v) => v.pid)).size).toBe(5);
    for (const v of report.vms) {
      expect(v.requests, v.name).toBeGreaterThan(0);
      expect(v.errors, v.name).toBe(0);
      expect(v.hypercalls, v.name).toBeGreaterThan(0);
      expect(v.state).toBe('running');
      expect(v.latencyMs.p99).toBeGreaterThanOrEqual(v.latencyMs.p50);
    }
    expect(typeof report.fidelity.degraded).toBe('boolean');
    expect(fs.readFileSync(path.join(reportDir, 'report.md'), 'utf8')).toMatch(/## What each VM did/);
  });

  it('rejects a malformed scenario with exit code 2, naming the bad field, before starting anything', () => {
    const home = tempHome();
    const bad = path.join(home, 'bad.yaml');
    fs.writeFileSync(bad, 'name: broken\nvms:\n  - name: web1\n    memoryMiB: plenty\n');
    const t = Date.now();
    const r = vmsim(home, ['run', bad, '--report', path.join(home, 'rep')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/vms\.0\.memoryMiB/);
    expect(Date.now() - t).toBeLessThan(5_000);
    expect(fs.existsSync(path.join(home, 'rep'))).toBe(false);
    expect(fs.existsSync(path.join(home, 'runs'))).toBe(false);
  });
});
