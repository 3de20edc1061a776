import { describe, expect, it } from 'vitest';
import { ErrorCode, loadConfig } from '@vmsim/shared';
import { ClientGenEnv } from './config.ts';

describe('ClientGenEnv', () => {
  it('parses targets with defaults', () => {
    const cfg = loadConfig(ClientGenEnv, {
      VMSIM_LOAD:
        '[{"vm":"web1","ratePerS":50},{"vm":"web2","ratePerS":5,"arrival":"constant","mix":{"GET":1},"paths":["/x"]}]',
      VMSIM_DURATION_MS: '30000',
    });
    expect(cfg.VMSIM_LOAD).toEqual([
      { model: 'open', vm: 'web1', app: 'web', ratePerS: 50, arrival: 'poisson', mix: { GET: 9, POST: 1 } },
      {
        model: 'open',
        vm: 'web2',
        app: 'web',
        ratePerS: 5,
        arrival: 'constant',
        mix: { GET: 1, POST: 0 },
        paths: ['/x'],
      },
    ]);
    expect(cfg.VMSIM_DURATION_MS).toBe(30_000);
    expect(cfg.VMSIM_REQUEST_TIMEOUT_MS).toBe(5_000);
    expect(cfg.VMSIM_SEED).toBe('1');
  });

  it('parses closed targets and per-app mixes', () => {
    const load = [
      { vm: 'db1', app: 'db', users: 20, thinkMs: 500, keys: 1000 },
      { model: 'closed', vm: 'game1', app: 'game', users: 8, thinkMs: 50 },
      { vm: 'mail1', app: 'mail', ratePerS: 10, mix: { SUBMIT: 1 } },
      { model: 'open', vm: 'files', app: 'file', ratePerS: 2, maxFileBytes: 1_000_000 },
    ];
    const cfg = loadConfig(ClientGenEnv, { VMSIM_LOAD: JSON.stringify(load) });
    expect(cfg.VMSIM_LOAD).toEqual([
      {
        model: 'closed',
        vm: 'db1',
        app: 'db',
        users: 20,
        thinkMs: 500,
        keys: 1000,
        mix: { GET: 8, PUT: 1.5, SCAN: 0.5 },
      },
      { model: 'closed', vm: 'game1', app: 'game', users: 8, thinkMs: 50, mix: { INPUT: 1, LEAVE: 0 } },
      {
        model: 'open',
        vm: 'mail1',
        app: 'mail',
        ratePerS: 10,
        arrival: 'poisson',
        mix: { SUBMIT: 1, FETCH: 0, LIST: 0 },
      },
      {
        model: 'open',
        vm: 'files',
        app: 'file',
        ratePerS: 2,
        arrival: 'poisson',
        maxFileBytes: 1_000_000,
        mix: { UPLOAD: 3, DOWNLOAD: 7 },
      },
    ]);
  });

  const load = (targets: unknown[]) => ({ VMSIM_LOAD: JSON.stringify(targets) });
  it.each([
    ['missing', {}, /VMSIM_LOAD/],
    ['not JSON', { VMSIM_LOAD: '[{' }, /not JSON/],
    ['empty', { VMSIM_LOAD: '[]' }, /VMSIM_LOAD/],
    ['a bad VM name', load([{ vm: 'a.b', ratePerS: 1 }]), /VMSIM_LOAD\.0\.vm/],
    ['a zero mix', load([{ vm: 'a', ratePerS: 1, mix: { GET: 0, POST: 0 } }]), /VMSIM_LOAD\.0\.mix: mix weights/],
    ['a negative duration', { ...load([{ vm: 'a', ratePerS: 1 }]), VMSIM_DURATION_MS: '-1' }, /VMSIM_DURATION_MS/],
    [
      'an op of another app',
      load([{ vm: 'a', app: 'db', ratePerS: 1, mix: { POST: 1 } }]),
      /VMSIM_LOAD\.0\.mix\.POST: not an op of a db/,
    ],
    [
      'a game JOIN weight',
      load([{ vm: 'a', app: 'game', ratePerS: 1, mix: { JOIN: 1 } }]),
      /mix\.JOIN: .*sent by each player/,
    ],
    ['a negative weight', load([{ vm: 'a', ratePerS: 1, mix: { GET: -1 } }]), /VMSIM_LOAD\.0\.mix\.GET/],
    ['an unknown app', load([{ vm: 'a', app: 'ftp', ratePerS: 1 }]), /VMSIM_LOAD\.0\.app/],
    ['an option of another app', load([{ vm: 'a', ratePerS: 1, keys: 10 }]), /VMSIM_LOAD\.0\.keys: only for app 'db'/],
    ['an unknown field', load([{ vm: 'a', ratePerS: 1, rate: 3 }]), /VMSIM_LOAD\.0.*rate/],
    ['both rate and users', load([{ vm: 'a', ratePerS: 1, users: 3, thinkMs: 1 }]), /not both/],
    ['closed without thinkMs', load([{ vm: 'a', users: 3 }]), /VMSIM_LOAD\.0\.thinkMs/],
    ['closed with 0 users', load([{ vm: 'a', users: 0, thinkMs: 5 }]), /VMSIM_LOAD\.0\.users/],
    ['closed with an arrival', load([{ vm: 'a', users: 2, thinkMs: 5, arrival: 'poisson' }]), /arrival/],
    ['a bad model', load([{ vm: 'a', model: 'half', ratePerS: 1 }]), /VMSIM_LOAD\.0\.model/],
    [
      'files smaller than their minimum',
      load([{ vm: 'a', app: 'file', ratePerS: 1, minFileBytes: 10, maxFileBytes: 5 }]),
      /VMSIM_LOAD\.0\.minFileBytes/,
    ],
  ])('names the problem when VMSIM_LOAD is %s', (_what, env, message) => {
    expect(() => loadConfig(ClientGenEnv, env)).toThrow(message);
    try {
      loadConfig(ClientGenEnv, env);
    } catch (e) {
      expect((e as { code?: string }).code).toBe(ErrorCode.CONFIG);
    }
  });
});
