import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AdoptedProcess,
  decideAdoption,
  isGuestProcess,
  procStateOfStat,
  type GuestProbe,
  type PersistedRun,
  type ProcState,
} from './adoption.ts';

const run = (over: Partial<PersistedRun> = {}): PersistedRun => ({
  state: 'running',
  pid: 4242,
  startedAt: 1,
  bootMs: 900,
  restarts: 0,
  usedMiB: 224,
  ...over,
});
const alive: GuestProbe = { proc: 'alive', isGuest: true };

describe('decideAdoption: what a restarted hypervisor does with each VM', () => {
  it('re-adopts a running guest that is still alive, and a paused one (stopped by SIGSTOP) as paused', () => {
    expect(decideAdoption(run(), alive)).toMatchObject({ kind: 'adopt', state: 'running' });
    expect(decideAdoption(run({ state: 'paused' }), { proc: 'stopped', isGuest: true })).toMatchObject({
      kind: 'adopt',
      state: 'paused',
    });
    expect(decideAdoption(run(), alive).reason).toMatch(/re-adopted running guest pid 4242/);
  });

  it('marks a guest that died meanwhile crashed, with the pid in the reason', () => {
    const d = decideAdoption(run(), { proc: 'gone', isGuest: false });
    expect(d.kind).toBe('crashed');
    expect(d.reason).toMatch(/pid 4242 is gone/);
  });

  it('does not adopt a process that took a recorded pid over', () => {
    const d = decideAdoption(run(), { proc: 'alive', isGuest: false });
    expect(d.kind).toBe('crashed');
    expect(d.reason).toMatch(/belongs to another process/);
  });

  it('resets a guest caught booting (its boot hypercalls were lost) and forces off one caught shutting down', () => {
    expect(decideAdoption(run({ state: 'starting' }), alive).kind).toBe('kill-crash');
    expect(decideAdoption(run({ state: 'stopping' }), alive).kind).toBe('kill-stop');
    expect(decideAdoption(run({ state: 'stopping' }), { proc: 'gone', isGuest: false }).kind).toBe('stopped');
  });

  it('keeps inactive VMs as they were, and starts again those its own shutdown powered off', () => {
    expect(decideAdoption(undefined, undefined)).toMatchObject({ kind: 'keep', state: 'defined' });
    expect(decideAdoption(run({ state: 'failed', pid: null }), undefined)).toMatchObject({
      kind: 'keep',
      state: 'failed',
    });
    expect(decideAdoption(run({ state: 'stopped', pid: null }), undefined)).toMatchObject({
      kind: 'keep',
      state: 'stopped',
    });
    expect(decideAdoption(run({ state: 'stopped', pid: null, resume: true }), undefined).kind).toBe('start');
  });

  it('an active VM with no recorded pid crashed', () => {
    expect(decideAdoption(run({ pid: null }), undefined).kind).toBe('crashed');
  });
});

describe('process probes', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('reads the state letter after the command name, whatever the name holds', () => {
    expect(procStateOfStat('123 (node) S 1 123')).toBe('alive');
    expect(procStateOfStat('123 (a) b) R 1 123')).toBe('alive');
    expect(procStateOfStat('123 (node) Z 1 123')).toBe('gone');
    expect(procStateOfStat('123 (node) T 1 123')).toBe('stopped');
  });

  it("recognises a VM's guest by its environment", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-proc-'));
    dirs.push(root);
    fs.mkdirSync(path.join(root, 'self'));
    fs.mkdirSync(path.join(root, '77'));
    fs.writeFileSync(path.join(root, '77', 'environ'), 'PATH=/bin\0VMSIM_NS=ns1\0VMSIM_VM=web1\0');
    expect(isGuestProcess(77, 'ns1', 'web1', root)).toBe(true);
    expect(isGuestProcess(77, 'ns1', 'web2', root)).toBe(false);
    expect(isGuestProcess(77, 'ns2', 'web1', root)).toBe(false);
    expect(isGuestProcess(78, 'ns1', 'web1', root)).toBe(false);
  });

  it('this very process is alive and is nobody’s guest', () => {
    expect(isGuestProcess(process.pid, 'ns1', 'web1')).toBe(false);
  });
});

describe('AdoptedProcess: exit detection for a guest that is not our child', () => {
  it('emits exit once when the probe says it is gone, with the fatal signal we sent', () => {
    let state: ProcState = 'alive';
    const p = new AdoptedProcess(999_999, 60_000, () => state);
    const exits: unknown[][] = [];
    p.on('exit', (...a: unknown[]) => exits.push(a));
    p.poll();
    expect(exits).toEqual([]);
    // A pid that does not exist cannot be signalled: the signal is not remembered.
    expect(p.kill('SIGKILL')).toBe(false);
    state = 'gone';
    p.poll();
    expect(exits).toEqual([[null, null]]);
    p.poll();
    expect(exits).toHaveLength(1);
  });
});
