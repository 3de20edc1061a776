import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));

function vmsim(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The rows of a `vmsim disk list` table, by disk id, as header → cell. */
function diskRows(out: string): Map<string, Record<string, string>> {
  const [head, ...lines] = out.trimEnd().split('\n');
  // Columns start where the header's names do (headers may hold one space: "MEAN LAT ms").
  const starts = [...head!.matchAll(/(?:^|(?<= {2}))\S/g)].map((m) => m.index);
  const cells = (line: string) => starts.map((s, i) => line.slice(s, starts[i + 1]).trim());
  const names = cells(head!);
  return new Map(
    lines.map((l) => {
      const c = cells(l);
      return [c[0]!, Object.fromEntries(names.map((n, i) => [n, c[i] ?? '']))];
    }),
  );
}

describe('vmsim pool and disk', () => {
  const home = tempHome();
  afterAll(() => {
    vmsim(home, ['down']);
  });

  it('refuses a disk without a size before calling anything', () => {
    const r = vmsim(home, ['disk', 'create', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--size/);
  });

  it('creates, snapshots, templates and clones disks on a running stack', () => {
    const up = vmsim(home, ['up', '--time-scale', '1']);
    expect(up.code, up.err).toBe(0);

    const pools = vmsim(home, ['pool', 'list']);
    expect(pools.code, pools.err).toBe(0);
    expect(pools.out).toMatch(/^default +/m);

    const created = vmsim(home, ['disk', 'create', 'gold', '--size', '2']);
    expect(created.code, created.err).toBe(0);
    expect(created.out).toMatch(/created disk gold: thin, 2\.00 GiB in pool default/);
    expect(vmsim(home, ['disk', 'snapshot', 'gold', 'installed']).code).toBe(0);
    let disks = diskRows(vmsim(home, ['disk', 'list']).out);
    expect(disks.get('gold')).toMatchObject({ TYPE: 'thin', VIRTUAL: '2.00 GiB', SNAPSHOTS: '1' });

    const template = vmsim(home, ['disk', 'template', 'gold']);
    expect(template.code, template.err).toBe(0);
    const clones = vmsim(home, ['disk', 'clone', 'gold', 'web', '--count', '3']);
    expect(clones.code, clones.err).toBe(0);
    expect(clones.out).toMatch(/^web-3 +\d/m);
    expect(clones.out).toMatch(/^total \(3\) +\d/m);

    disks = diskRows(vmsim(home, ['disk', 'list']).out);
    expect(disks.get('gold')!['TEMPLATE/ORIGIN']).toBe('template');
    for (const id of ['web-1', 'web-2', 'web-3'])
      expect(disks.get(id), id).toMatchObject({ 'TEMPLATE/ORIGIN': 'gold', TYPE: 'thin' });

    const del = vmsim(home, ['disk', 'delete', 'gold']);
    expect(del.code).not.toBe(0);
    expect(del.err).toMatch(/web-1/);
    expect(del.err).toMatch(/web-3/);
    expect(diskRows(vmsim(home, ['disk', 'list']).out).has('gold')).toBe(true);
  });
});
