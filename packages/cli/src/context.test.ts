import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireContext, writeContext, type Context } from './context.ts';

describe('finding the stack', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-ctx-'));

  it('falls back to NATS_URL, VMSIM_NS and VMSIM_HOST when there is no context file', () => {
    const ctx = requireContext(home, { NATS_URL: 'nats://nats:4222', VMSIM_NS: 'demo', VMSIM_HOST: 'h7' });
    expect(ctx).toMatchObject({ natsUrl: 'nats://nats:4222', ns: 'demo', host: 'h7' });
    expect(requireContext(home, { NATS_URL: 'nats://x:1' })).toMatchObject({ ns: 'vmsim', host: 'host1' });
  });

  it('says how to start a stack when it finds none', () => {
    expect(() => requireContext(home, {})).toThrow(/vmsim up.*docker compose up/);
  });

  it('prefers the context file written by vmsim up', () => {
    const written: Context = {
      version: 1,
      natsUrl: 'nats://127.0.0.1:5555',
      ns: 'vmsim',
      host: 'host1',
      home,
      startedAt: 'now',
      pids: { nats: 1, hostAgent: 2, hypervisor: 3 },
      logs: { nats: null, hostAgent: 'a', hypervisor: 'b' },
      timeScale: 10,
    };
    writeContext(home, written);
    expect(requireContext(home, { NATS_URL: 'nats://elsewhere:1' }).natsUrl).toBe('nats://127.0.0.1:5555');
  });
});
