import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));

/**
 * Bad flags and scenario files end with exit code 2 and a message naming the flag or field,
 * before anything starts: nats-server points nowhere, so a command that got as far as
 * starting the stack would fail with exit code 1 and a message about nats-server instead.
 */
describe('the vmsim command refuses bad input before starting anything', () => {
  const home = tempHome();
  const vmsim = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], {
      env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home, NATS_SERVER_BIN: '/nonexistent' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    return { code: r.status, err: r.stderr };
  };
  const scenario = (text: string): string => {
    const file = path.join(home, `s${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, text);
    return file;
  };

  it.each([
    [['up', '--time-scale', '0'], /--time-scale: must be > 0/],
    [['up', '--overcommit', '11'], /--overcommit: from 1 to 10/],
    [['up', '--profile', 'nope'], /--profile: hardware profile "nope" not found/],
    [['up', '--ns', 'a b'], /--ns: namespace token "a b"/],
    [['up', '--host', 'a.b'], /--host: "a\.b"/],
    [['load', 'web1', '--rate', '0'], /--rate: must be > 0/],
    [['load', 'web1', '--post', '1.5'], /--post: must be from 0 to 1/],
    [['load', 'web1,a.b'], /VM name "a\.b"/],
    [['vm', 'start', 'x>y'], /VM name "x>y"/],
    [['vm', 'tune', 'w1', '--shares', '0'], /invalid tune: shares: /],
    [['stress', 'a*', 'cpu'], /VM name "a\*"/],
    [['run', 'scenarios/demo.yaml', '--time-scale', '5000'], /--time-scale: must be > 0 and at most 1000/],
    [['isolation', '--time-scale', '0', '--runs', '1'], /--time-scale: must be > 0/],
    [['compare-types', '--time-scale', '2000'], /--time-scale: must be > 0 and at most 1000/],
    [['fault', 'a.b', 'crash'], /VM name "a\.b"/],
  ])('%j', (args, message) => {
    const r = vmsim(args);
    expect(r.err).toMatch(message);
    expect(r.code, r.err).toBe(2);
  });

  it('names the bad field of a scenario file', () => {
    const r = vmsim([
      'run',
      scenario(
        'name: x\nhost: {profile: nope}\nvms: [{name: a, memoryMiB: 1e9}]\nload: [{vm: a, ratePerS: 5, mix: {PUT: 1}}]\n',
      ),
    ]);
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/host\.profile: hardware profile "nope"/);
    expect(r.err).toMatch(/vms\.0\.memoryMiB: Too big/);
    expect(r.err).toMatch(/load\.0\.mix\.PUT: not an op of a web server/);
    expect(r.err).not.toMatch(/nats-server/);
  });
});
