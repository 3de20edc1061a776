import { describe, expect, it } from 'vitest';
import { VirtualClock, type FaultSpec } from '@vmsim/shared';
import { UsageError } from './commands.ts';
import { parseFaultArgs, parseWatchdogFlags } from './faults.ts';
import { ScenarioError, parseScenario } from './scenario.ts';
import { startTimeline, type TimelineApi } from './timeline.ts';

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('accepted');
}

describe('vmsim fault arguments', () => {
  it('turns the kind and flags into the fault request, clear into unfault', () => {
    expect(parseFaultArgs('web1', 'hang', { for: '5s' })).toEqual({
      op: 'fault',
      req: { name: 'web1', kind: 'hang', durationMs: 5000 },
    });
    expect(parseFaultArgs('web1', 'slow', { delay: '20ms' }).req).toEqual({ name: 'web1', kind: 'slow', delayMs: 20 });
    expect(parseFaultArgs('web1', 'hog', { target: 'disk', for: '1s' }).req).toEqual({
      name: 'web1',
      kind: 'hog',
      target: 'disk',
      durationMs: 1000,
    });
    expect(parseFaultArgs('web1', 'clear', {})).toEqual({ op: 'unfault', req: { name: 'web1' } });
  });

  it('refuses bad input with a message naming the flag', () => {
    expect(usage(() => parseFaultArgs('web1', 'explode', {}))).toMatch(/"explode" is not one of crash, kill/);
    expect(usage(() => parseFaultArgs('web1', undefined, {}))).toMatch(/fault needs a VM/);
    expect(usage(() => parseFaultArgs('web1', 'crash', { for: '1s' }))).toMatch(/--for: crash is one-shot/);
    expect(usage(() => parseFaultArgs('web1', 'hang', { for: '0s' }))).toMatch(/--for: must be longer than 0/);
    expect(usage(() => parseFaultArgs('web1', 'hang', { for: 'soon' }))).toMatch(/--for/);
    expect(usage(() => parseFaultArgs('web1', 'hang', { delay: '5ms' }))).toMatch(/--delay: only for a slow fault/);
    expect(usage(() => parseFaultArgs('web1', 'hog', { target: 'gpu' }))).toMatch(
      /--target: "gpu" is not one of cpu, disk, net/,
    );
    expect(usage(() => parseFaultArgs('web1', 'slow', { target: 'cpu' }))).toMatch(/--target: only for a hog fault/);
    expect(usage(() => parseFaultArgs('web1', 'clear', { for: '1s' }))).toMatch(/--for: only when injecting/);
  });

  it('reads --watchdog and --watchdog-timeout, keeping what is not given', () => {
    expect(parseWatchdogFlags(undefined, undefined)).toBeUndefined();
    expect(parseWatchdogFlags('pause', '3s')).toEqual({ action: 'pause', timeoutMs: 3000 });
    expect(parseWatchdogFlags(undefined, '2s', { action: 'none' })).toEqual({ action: 'none', timeoutMs: 2000 });
    expect(parseWatchdogFlags('poweroff', undefined, { action: 'none', timeoutMs: 900 })).toEqual({
      action: 'poweroff',
      timeoutMs: 900,
    });
    expect(usage(() => parseWatchdogFlags('reboot', undefined))).toMatch(
      /--watchdog: "reboot" is not one of reset, poweroff, pause, none/,
    );
    expect(usage(() => parseWatchdogFlags('reset', '50ms'))).toMatch(/--watchdog-timeout: at least 200ms/);
  });
});

describe('fault steps in a scenario timeline', () => {
  const base = 'name: x\nduration: 10s\nvms: [{name: a, watchdog: {action: pause, timeoutMs: 3000}}]\ntimeline:\n';
  const error = (text: string): string => {
    try {
      parseScenario(text, 'bad.yaml');
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioError);
      return (e as Error).message;
    }
    throw new Error('accepted');
  };

  it('reads fault and unfault steps and the VM watchdog', () => {
    const s = parseScenario(
      `${base}  - { at: 1s, fault: hog, vm: a, target: net, for: 2s }\n  - { at: 2s, fault: slow, vm: a, delay: 20ms }\n  - { at: 4s, unfault: a }\n`,
      'ok.yaml',
    );
    expect(s.vms[0]!.watchdog).toEqual({ action: 'pause', timeoutMs: 3000 });
    expect(s.timeline).toEqual([
      { at: 1000, fault: 'hog', vm: 'a', target: 'net', for: 2000 },
      { at: 2000, fault: 'slow', vm: 'a', delay: 20 },
      { at: 4000, unfault: 'a' },
    ]);
  });

  it('names the bad field of a bad step', () => {
    expect(error(`${base}  - { at: 1s, fault: melt, vm: a }\n`)).toMatch(/timeline\.0\.fault: /);
    expect(error(`${base}  - { at: 1s, fault: hang }\n`)).toMatch(/timeline\.0\.vm: a fault step needs the VM/);
    expect(error(`${base}  - { at: 1s, fault: hang, vm: zz }\n`)).toMatch(/timeline\.0\.vm: no VM named zz/);
    expect(error(`${base}  - { at: 1s, unfault: zz }\n`)).toMatch(/timeline\.0\.unfault: no VM named zz/);
    expect(error(`${base}  - { at: 1s, fault: kill, vm: a, for: 1s }\n`)).toMatch(/timeline\.0\.for: kill is one-shot/);
    expect(error(`${base}  - { at: 1s, fault: hang, vm: a, delay: 1ms }\n`)).toMatch(
      /timeline\.0\.delay: only for a slow fault/,
    );
    expect(error(`${base}  - { at: 1s, fault: hog, vm: a, target: gpu }\n`)).toMatch(/timeline\.0\.target: /);
    expect(error(`${base}  - { at: 1s, fault: slow, vm: a, target: cpu }\n`)).toMatch(
      /timeline\.0\.target: only for a hog fault/,
    );
    expect(error(`${base}  - { at: 1s, unfault: a, vm: a }\n`)).toMatch(/timeline\.0\.vm: only in a fault step/);
    expect(error(`${base}  - { at: 1s, unfault: a, fault: crash, vm: a }\n`)).toMatch(
      /timeline\.0: a step takes exactly one action/,
    );
    expect(error(`name: x\nvms: [{name: a, watchdog: {action: reboot}}]\n`)).toMatch(/vms\.0\.watchdog\.action: /);
  });

  it('runs fault steps at their time, with their options', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    const api: TimelineApi = {
      stress: () => Promise.resolve(),
      unstress: () => Promise.resolve(),
      fault: (vm: string, spec: FaultSpec) => {
        calls.push(`${clock.now()} fault ${vm} ${JSON.stringify(spec)}`);
        return Promise.resolve();
      },
      unfault: (vm: string) => {
        calls.push(`${clock.now()} unfault ${vm}`);
        return Promise.resolve();
      },
    };
    const lines: string[] = [];
    const t = startTimeline({
      steps: [
        { at: 1000, fault: 'hog', vm: 'a', target: 'disk', for: 500 },
        { at: 2000, fault: 'slow', vm: 'a', delay: 7 },
        { at: 3000, unfault: 'a' },
      ],
      clock,
      startMs: 0,
      durationMs: 5000,
      api,
      out: (l) => lines.push(l),
    });
    clock.runUntil(5000);
    await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([
      '1000 fault a {"kind":"hog","durationMs":500,"target":"disk"}',
      '2000 fault a {"kind":"slow","delayMs":7}',
      '3000 unfault a',
    ]);
    expect(lines[0]).toBe('  timeline 1000 ms: fault a hog disk for 500.0 ms');
    await t.stop();
  });
});
