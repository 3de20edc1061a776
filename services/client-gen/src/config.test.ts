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
      { vm: 'web1', ratePerS: 50, arrival: 'poisson', mix: { GET: 9, POST: 1 } },
      { vm: 'web2', ratePerS: 5, arrival: 'constant', mix: { GET: 1, POST: 0 }, paths: ['/x'] },
    ]);
    expect(cfg.VMSIM_DURATION_MS).toBe(30_000);
    expect(cfg.VMSIM_REQUEST_TIMEOUT_MS).toBe(5_000);
    expect(cfg.VMSIM_SEED).toBe('1');
  });

  it.each([
    ['missing', {}, /VMSIM_LOAD/],
    ['not JSON', { VMSIM_LOAD: '[{' }, /not JSON/],
    ['empty', { VMSIM_LOAD: '[]' }, /VMSIM_LOAD/],
    ['a bad VM name', { VMSIM_LOAD: '[{"vm":"a.b","ratePerS":1}]' }, /VMSIM_LOAD\.0\.vm/],
    ['a zero mix', { VMSIM_LOAD: '[{"vm":"a","ratePerS":1,"mix":{"GET":0,"POST":0}}]' }, /weights/],
    ['a negative duration', { VMSIM_LOAD: '[{"vm":"a","ratePerS":1}]', VMSIM_DURATION_MS: '-1' }, /VMSIM_DURATION_MS/],
  ])('names the problem when VMSIM_LOAD is %s', (_what, env, message) => {
    expect(() => loadConfig(ClientGenEnv, env)).toThrow(message);
    try {
      loadConfig(ClientGenEnv, env);
    } catch (e) {
      expect((e as { code?: string }).code).toBe(ErrorCode.CONFIG);
    }
  });
});
