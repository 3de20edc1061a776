import { describe, expect, it } from 'vitest';
import { VirtualClock, type HostInfo, type IngressReply, type VmInfo } from '@vmsim/shared';
import type { Send } from '@vmsim/client-gen';
import { durabilityHeld, startDurabilityChecks, type DurabilityFigures } from './durability-check.ts';
import { assessFidelity, buildReport, renderMarkdown } from './report.ts';
import { ScenarioError, parseScenario } from './scenario.ts';

const scenario = parseScenario(
  `name: d
vms: [{name: db1, app: db}, {name: db2, app: db, ackBeforeFlush: true}, {name: w, app: web}]
load:
  - {vm: db1, model: closed, users: 2, durability: true}
  - {vm: db2, ratePerS: 10, durability: {concurrency: 3}}
  - {vm: w, ratePerS: 10}
`,
  'd.yaml',
);

function error(text: string): string {
  try {
    parseScenario(text, 'bad.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as Error).message;
  }
  throw new Error('scenario was accepted');
}

/** Only what buildReport reads of a VM. */
function vm(name: string, app: 'web' | 'db'): VmInfo {
  return {
    name,
    definition: { name, app, os: 'linux', vcpus: 1, memoryMiB: 1024, shares: 100 },
    state: 'running',
    reason: 'booted',
    pid: 1,
    restarts: 0,
    bootMs: 100,
    hypercalls: { total: 0, rejected: 0, byOp: {} },
    net: { waitMs: 0 },
    app: {},
  } as unknown as VmInfo;
}

const host = {
  host: 'h',
  hypervisor: 'type1',
  scheduler: 'fair',
  timeScale: 1,
  overcommit: 1,
  memory: { totalMiB: 1 },
  cpu: { cores: 4, mhz: 2800 },
  hostAgent: { bootId: 'x', profile: 'small' },
  overhead: { type: 'type1' },
  hostCpuMs: 0,
} as unknown as HostInfo;

const figures = (lost: number, extra: Partial<DurabilityFigures> = {}): DurabilityFigures => ({
  acked: 1000,
  lost,
  written: 1010,
  unacked: 10,
  unackedLanded: 4,
  corrupt: 0,
  unverified: 0,
  attempts: 1100,
  failedAttempts: 90,
  examples: lost ? ['dur/x:00000007 lost'] : [],
  ...extra,
});

function report(durability: Map<string, DurabilityFigures>) {
  const vms = [vm('db1', 'db'), vm('db2', 'db'), vm('w', 'web')];
  return buildReport({
    scenario,
    startedAt: new Date(0),
    finishedAt: new Date(1),
    hostInfo: host,
    before: vms,
    after: vms,
    targets: [],
    fidelity: assessFidelity({}, 1, []),
    realCpu: { cores: 2, wallSeconds: 1, cpuSeconds: 1, busyPct: 50, byProcess: {} },
    durability,
  });
}

describe('scenario durability option', () => {
  it('reads durability on db loads and the unsafe toggle on db VMs', () => {
    expect(scenario.load.map((l) => l.durability)).toEqual([true, { concurrency: 3 }, undefined]);
    expect(scenario.vms.map((v) => v.ackBeforeFlush)).toEqual([false, true, false]);
  });

  it('names the field when durability or the toggle is asked of a VM that is not a db', () => {
    expect(error('name: x\nvms: [{name: a, app: web}]\nload: [{vm: a, ratePerS: 5, durability: true}]\n')).toMatch(
      /load\.0\.durability: the durability check needs a db VM; a runs web/,
    );
    expect(error('name: x\nvms: [{name: a, app: mail, ackBeforeFlush: true}]\n')).toMatch(
      /vms\.0\.ackBeforeFlush: only for a db VM/,
    );
    expect(
      error('name: x\nvms: [{name: a, app: db}]\nload: [{vm: a, ratePerS: 5, durability: {concurrency: 0}}]\n'),
    ).toMatch(/load\.0\.durability/);
    expect(
      error(
        'name: x\nvms: [{name: a, app: db}]\nload: [{vm: a, ratePerS: 5, durability: true}, {vm: a, ratePerS: 1, durability: true}]\n',
      ),
    ).toMatch(/durability is asked twice for a/);
  });
});

describe('durability in reports', () => {
  it('adds {acked, lost} to each checked db VM and passes when nothing was lost', () => {
    const r = report(new Map([['db1', figures(0)]]));
    expect(r.verdict).toBe('pass');
    expect(r.vms.find((v) => v.name === 'db1')!.durability).toMatchObject({ acked: 1000, lost: 0 });
    expect(r.vms.find((v) => v.name === 'w')!.durability).toBeUndefined();
    expect(r.slo).toEqual([{ vm: 'db1', metric: 'lostWrites', threshold: 0, actual: 0, pass: true }]);
    const md = renderMarkdown(r);
    expect(md).toMatch(/## Durability/);
    expect(md).toContain('| db1 | 1010 | 1000 | 0 | 10 (4) | 0 | 0 | 1100 (90) | held |');
    expect(md).toContain('| db1 | acknowledged writes lost | 0 | 0 | held |');
  });

  it('fails the run when an acknowledged write was lost, or keys could not be read back', () => {
    const r = report(
      new Map([
        ['db1', figures(0)],
        ['db2', figures(3)],
      ]),
    );
    expect(r.verdict).toBe('fail');
    expect(r.slo.find((x) => !x.pass)).toMatchObject({ vm: 'db2', metric: 'lostWrites', actual: 3 });
    const md = renderMarkdown(r);
    expect(md).toMatch(/^# vmsim run: d — FAIL/);
    expect(md).toContain('| db2 | 1010 | 1000 | 3 | 10 (4) | 0 | 0 | 1100 (90) | **FAILED** |');
    expect(md).toContain('db2: dur/x:00000007 lost.');
    expect(report(new Map([['db1', figures(0, { unverified: 1000 })]])).verdict).toBe('fail');
    expect(durabilityHeld(figures(0, { corrupt: 1 }))).toBe(false);
  });

  it('has no durability section when the scenario asks for none', () => {
    const r = report(new Map());
    expect(r.slo).toEqual([]);
    expect(renderMarkdown(r)).not.toMatch(/## Durability/);
  });
});

describe('startDurabilityChecks', () => {
  it('writes to the VMs that ask for it until finish(), then reads every key back', async () => {
    const clock = new VirtualClock();
    const store = new Map<string, Uint8Array>();
    const sent: string[] = [];
    let finishing: Promise<Map<string, DurabilityFigures>> | undefined;
    const send: Send = (vmName, req) => {
      sent.push(vmName);
      if (req.app !== 'db') throw new Error('not db');
      const reply: IngressReply =
        req.op === 'PUT'
          ? (store.set(`${vmName}/${req.key}`, req.value!), { ok: true, status: 200, bytes: 1 })
          : store.has(`${vmName}/${req.key}`)
            ? { ok: true, status: 200, bytes: 1, data: store.get(`${vmName}/${req.key}`)! }
            : { ok: true, status: 404, bytes: 1 };
      return new Promise((r) => clock.at(clock.now() + 1, () => r(reply)));
    };
    const checks = startDurabilityChecks({ scenario, runId: 'r1', clock, send });
    expect(checks.vms).toEqual(['db1', 'db2']);
    clock.at(20, () => {
      finishing = checks.finish(async (v) => v === 'db1');
    });
    for (let t = 0; t < 100; t++) {
      clock.runUntil(t);
      for (let i = 0; i < 10; i++) await Promise.resolve();
    }
    const out = await finishing!;
    expect(out.get('db1')).toMatchObject({ lost: 0, unverified: 0 });
    expect(out.get('db1')!.acked).toBeGreaterThan(50);
    // db2 never served again: nothing could be read, so nothing shows its writes were kept.
    expect(out.get('db2')!.unverified).toBe(out.get('db2')!.written);
    expect(durabilityHeld(out.get('db2')!)).toBe(false);
    expect(sent).not.toContain('w');
    expect([...store.keys()].every((k) => k.includes('/dur/r1:'))).toBe(true);
  });
});
