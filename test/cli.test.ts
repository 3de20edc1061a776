import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));

function vmsim(home: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function vmsimAsync(home: string, args: string[]) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('the vmsim command', () => {
  const home = tempHome();
  afterAll(() => {
    vmsim(home, ['down']);
  });

  it('explains how to get nats-server when it is missing', () => {
    const r = vmsim(tempHome(), ['up'], { NATS_SERVER_BIN: '/nonexistent/nats-server' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/apt-get install nats-server/);
    expect(r.err).toMatch(/docker compose up/);
  });

  it('rejects bad input with exit code 2 before starting anything', () => {
    expect(vmsim(home, ['frobnicate']).code).toBe(2);
    expect(vmsim(home, ['up', '--scheduler', 'lottery']).err).toMatch(
      /--scheduler: "lottery" is not one of fair, fifo/,
    );
    expect(vmsim(home, ['vm', 'define', 'x', '--vcpus', 'many']).code).toBe(2);
    const r = vmsim(home, ['vm', 'define', 'x', '--memory', '1']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/memoryMiB/);
    expect(vmsim(home, ['status']).err).toMatch(/no running stack/);
  });

  it('brings a stack up, manages a VM through it, drives load and takes it down', async () => {
    const up = vmsim(home, ['up', '--time-scale', '1']);
    expect(up.code, up.err).toBe(0);
    expect(up.out).toMatch(/up: host host1, 4 cores/);
    expect(vmsim(home, ['up']).err).toMatch(/already up/);
    // Its nats-server runs with auth on: the CLI finds its own creds in the context; nobody gets in without.
    const ctx = JSON.parse(fs.readFileSync(path.join(home, 'context.json'), 'utf8')) as { natsUrl: string };
    await expect(connect({ servers: ctx.natsUrl, reconnect: false })).rejects.toThrow(/authorization/i);
    expect(vmsim(home, ['vm', 'define', 'w1', '--memory', '512', '--disk', '0.25', '--os', 'bsd']).code).toBe(0);
    expect(vmsim(home, ['vm', 'define', 'w1']).err).toMatch(/VMSIM_ERR_VM_EXISTS/);
    const start = vmsim(home, ['vm', 'start', 'w1']);
    expect(start.code, start.err).toBe(0);
    expect(start.out).toMatch(/w1: running/);
    const list = JSON.parse(vmsim(home, ['vm', 'list', '--json']).out) as {
      name: string;
      state: string;
      pid: number;
    }[];
    expect(list).toMatchObject([{ name: 'w1', state: 'running' }]);
    const load = await vmsimAsync(home, ['load', 'w1', '--rate', '30', '--duration', '1s', '--json']);
    expect(load.code, load.err).toBe(0);
    const summary = JSON.parse(load.out) as { totals: { ok: number; errors: number } };
    expect(summary.totals.ok).toBeGreaterThan(10);
    expect(summary.totals.errors).toBe(0);
    expect(vmsim(home, ['vm', 'info', 'w1']).out).toMatch(/hypercalls: +\d+ total/);
    expect(vmsim(home, ['vm', 'destroy', 'w1']).out).toMatch(/w1: stopped/);
    const down = vmsim(home, ['down']);
    expect(down.code).toBe(0);
    for (const pid of [list[0]!.pid]) expect(() => process.kill(pid, 0)).toThrow();
    expect(vmsim(home, ['status']).code).toBe(1);
  });
});
