import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { waitFor } from '@vmsim/shared';
import { dockerAnswers } from './helpers/nats.ts';

// The docker compose path, for real: builds the image, runs `docker compose up` (client-gen runs
// the default scenario on the stack), waits until the scenario's VMs run and serve, checks the
// summary and the report, and tears everything down with its volumes. Runs only when a Docker
// engine answers (`../shared/tools/local-docker up` starts one on machines that have none);
// NATS_IMAGE comes from the environment (compose's default otherwise), e.g. NATS_IMAGE=nats:2.9
// where images cannot be pulled.

const ROOT = path.resolve(import.meta.dirname, '..');
const SCENARIO = 'scenarios/demo.yaml';
/** Fast enough for a test: the slowest VM of the demo boots in about 6 s of wall time. */
const TIME_SCALE = 2;
/** Simulated load, shorter than the scenario's own. */
const LOAD = '2s';
const LOAD_WALL_MS = 2_000 * TIME_SCALE;
const SERVING_DEADLINE_MS = 180_000;
const DOWN_BUDGET_MS = 30_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

interface Run {
  code: number;
  out: string;
  err: string;
  ms: number;
}

const project = `vmsimtest${process.pid}${Math.random().toString(36).slice(2, 8)}`;
/** Where client-gen's `vmsim run` writes this test's report (./reports is bind-mounted). */
const reportDir = `reports/${project}`;
let env: NodeJS.ProcessEnv = {};

/** `docker compose <args>` in the repository root for this test's own project; never throws. */
function compose(args: string[], timeoutMs = 120_000): Promise<Run> {
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(
      'docker',
      ['compose', ...args],
      { cwd: ROOT, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, out: stdout, err: stderr, ms: Date.now() - start });
      },
    );
  });
}

async function ok(args: string[], timeoutMs?: number): Promise<Run> {
  const r = await compose(args, timeoutMs);
  if (r.code !== 0) throw new Error(`docker compose ${args.join(' ')} failed (${r.code}):\n${r.err}\n${r.out}`);
  return r;
}

async function logsTail(): Promise<string> {
  return (await compose(['logs', '--no-color', '--tail', '40'])).out;
}

interface StatusVm {
  name: string;
  state: string;
  definition: { app: string };
  net: { requests: number };
}

/** `vmsim status --json` through the compose `cli` service; undefined until the stack answers. */
async function status(): Promise<StatusVm[] | undefined> {
  const r = await compose(['run', '--rm', '-T', 'cli', 'status', '--json'], 60_000);
  if (r.code !== 0) return undefined;
  try {
    return (JSON.parse(r.out) as { vms: StatusVm[] }).vms;
  } catch {
    return undefined;
  }
}

/** Polls `probe` (every 500 ms, with shared's waitFor) until it yields a value; the error carries the logs. */
async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  let value: T | undefined;
  try {
    await waitFor(async () => (value = await probe()) !== undefined, deadlineMs, what, 500);
  } catch {
    throw new Error(`${what}: not within ${deadlineMs} ms; logs:\n${await logsTail()}`);
  }
  return value!;
}

/** client-gen's exit code once it has exited. */
async function clientGenExit(): Promise<number | undefined> {
  const id = (await compose(['ps', '-q', 'client-gen'])).out.trim();
  if (!id) return undefined;
  try {
    const [state, code] = execFileSync('docker', ['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}', id], {
      encoding: 'utf8',
      stdio: 'pipe',
    })
      .trim()
      .split(' ');
    return state === 'exited' ? Number(code) : undefined;
  } catch {
    return undefined;
  }
}

describe.skipIf(!dockerAnswers())('docker compose up', () => {
  let upAt = 0;

  beforeAll(async () => {
    env = {
      ...process.env,
      COMPOSE_PROJECT_NAME: project,
      VMSIM_NATS_PORT: String(await freePort()),
      VMSIM_NS: 'vmsim',
      VMSIM_HOST: 'host1',
      VMSIM_TIME_SCALE: String(TIME_SCALE),
      VMSIM_PROFILE: 'small',
      VMSIM_SCHEDULER: 'fair',
      VMSIM_HYPERVISOR_TYPE: 'type1',
      VMSIM_OVERCOMMIT: '1',
      LOG_LEVEL: 'info',
      VMSIM_SCENARIO: SCENARIO,
      VMSIM_RUN_ARGS: `--duration ${LOAD} --report ${reportDir}`,
    };
    // Made here rather than by docker (as root) when the checkout has none yet.
    fs.mkdirSync(path.join(ROOT, 'reports'), { recursive: true });
    // One image serves every service: building one of them builds it (cached between runs).
    const build = await ok(['build', 'hypervisor'], 900_000);
    console.log(`compose test: image built in ${build.ms} ms`);
    upAt = Date.now();
    await ok(['up', '-d'], 120_000);
  }, 960_000);

  afterAll(async () => {
    const down = await compose(['down', '-v', '--timeout', '10'], 120_000);
    console.log(`compose test: down -v took ${down.ms} ms`);
    fs.rmSync(path.join(ROOT, reportDir), { recursive: true, force: true });
    expect(down.code, down.err).toBe(0);
    expect(down.ms).toBeLessThan(DOWN_BUDGET_MS);
    const left = execFileSync('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`], {
      encoding: 'utf8',
    });
    expect(left.trim()).toBe('');
  }, 150_000);

  it(
    "runs the scenario's VMs, each serving requests",
    async () => {
      const vms = await until('the VMs running and serving', SERVING_DEADLINE_MS, async () => {
        const s = await status();
        return s && s.length > 0 && s.every((v) => v.state === 'running' && v.net.requests > 0) ? s : undefined;
      });
      console.log(`compose test: all ${vms.length} VMs serving ${Date.now() - upAt} ms after up`);
      expect(vms.length).toBeGreaterThanOrEqual(2);
      // Each guest is a process inside the hypervisor's container.
      const top = await ok(['top', 'hypervisor']);
      const guests = top.out.split('\n').filter((l) => l.includes('services/guest/'));
      expect(guests.length, top.out).toBe(vms.length);
      // NATS runs with auth on: a client without credentials is refused.
      await expect(connect({ servers: `127.0.0.1:${env['VMSIM_NATS_PORT']}`, reconnect: false })).rejects.toThrow(
        /authorization/i,
      );
    },
    SERVING_DEADLINE_MS + 30_000,
  );

  it('prints a summary of the VMs, writes the report to ./reports and leaves the stack running', async () => {
    // 0: every SLO held; 1: one was missed (not this test's concern); anything else fails.
    const code = await until('client-gen to finish the scenario', 120_000 + LOAD_WALL_MS, clientGenExit);
    const logs = (await ok(['logs', '--no-color', 'client-gen'])).out;
    expect([0, 1], logs).toContain(code);
    expect(logs).toMatch(/attached to the stack on nats:\/\/nats:4222/);
    expect(logs).toMatch(/all \d+ VMs running/);
    // The summary: a row per VM, the verdict, and where the report is.
    expect(logs).toMatch(/VM\s+APP\s+OS\s+STATE\s+PID\s+REQUESTS/);
    expect(logs).toMatch(/verdict: (PASS|FAIL)/);
    expect(logs).toContain(`report: ${reportDir}/report.md`);
    const report = JSON.parse(fs.readFileSync(path.join(ROOT, reportDir, 'report.json'), 'utf8')) as {
      vms: { name: string; state: string; requests: number }[];
    };
    expect(report.vms.length).toBeGreaterThanOrEqual(2);
    const rows = logs.split('\n').map((l) =>
      l
        .slice(l.indexOf('|') + 1)
        .trim()
        .split(/\s+/),
    );
    for (const vm of report.vms) {
      expect(vm.state, vm.name).toBe('running');
      expect(vm.requests, vm.name).toBeGreaterThan(0);
      expect(rows.some((r) => r[0] === vm.name && r[3] === 'running')).toBe(true);
    }
    expect(fs.existsSync(path.join(ROOT, reportDir, 'report.md'))).toBe(true);
    // The stack outlives the scenario: the CLI still reaches it, and the VMs still run.
    const vms = await status();
    expect(vms?.map((v) => v.name).sort()).toEqual(report.vms.map((v) => v.name).sort());
    expect(vms?.every((v) => v.state === 'running')).toBe(true);
  }, 180_000);

  it('rides out a host-agent power cut: docker kills it, compose starts it, the VMs serve again', async () => {
    const vms = (await status()) ?? [];
    expect(vms.length).toBeGreaterThan(0);
    await ok(['kill', '-s', 'KILL', 'host-agent']);
    await ok(['up', '-d', '--no-deps', 'host-agent'], 120_000);
    await until('the hypervisor to take the new host-agent back', 60_000, async () =>
      (await ok(['logs', '--no-color', 'hypervisor'])).out.includes('host-agent restarted') ? true : undefined,
    );
    // The web VMs answer a short load (`vmsim load` speaks web) through the new host-agent's
    // CPU, disk and NIC; every VM is running.
    const web = vms.filter((v) => v.definition.app === 'web');
    expect(web.length).toBeGreaterThan(0);
    for (const vm of web) {
      const served = await until(`${vm.name} serving after the power cut`, 60_000, async () => {
        const r = await compose(
          ['run', '--rm', '-T', 'cli', 'load', vm.name, '--rate', '20', '--duration', '1s', '--json'],
          60_000,
        );
        if (r.code !== 0) return undefined;
        try {
          const ok = (JSON.parse(r.out) as { targets: { ok: number }[] }).targets[0]?.ok ?? 0;
          return ok > 0 ? ok : undefined;
        } catch {
          return undefined;
        }
      });
      expect(served).toBeGreaterThan(0);
    }
    expect((await status())?.every((v) => v.state === 'running')).toBe(true);
  }, 240_000);
});
