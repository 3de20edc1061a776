import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IngressReply,
  ManagementClient,
  decode,
  encode,
  ingressSubject,
  namespace,
  waitFor,
  type IngressRequest,
  type NatsConnection,
} from '@vmsim/shared';
import { startTestStack, type TestStack } from './helpers/stack.ts';

/** Each server kind, served by its own guest through the hypervisor, as a client sees it. */
describe('the five server kinds through their guests', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let ns: string;

  beforeAll(async () => {
    t = await startTestStack({ timeScale: 1 });
    ({ nc, api, ns } = t);
    const vms = [
      { name: 'web1', app: 'web', memoryMiB: 512 },
      { name: 'mail1', app: 'mail', os: 'bsd', memoryMiB: 512 },
      { name: 'db1', app: 'db', memoryMiB: 1024 },
      { name: 'file1', app: 'file', memoryMiB: 1024 },
      { name: 'game1', app: 'game', memoryMiB: 1024 },
    ] as const;
    for (const vm of vms) {
      await api.call('define', { ...vm, diskGiB: 1 });
      await api.call('start', { name: vm.name });
    }
    await waitFor(
      async () => (await api.call('list', {})).vms.every((v) => v.state === 'running'),
      90_000,
      'all VMs running',
    );
  });

  afterAll(async () => {
    await t?.stop();
  });

  async function send(vm: string, req: IngressRequest): Promise<IngressReply> {
    return decode(
      (await nc.request(ingressSubject(namespace(ns), 'host1', vm), encode(req), { timeout: 20_000 })).data,
      IngressReply,
    );
  }
  function ok(r: IngressReply) {
    if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
    return r;
  }

  it('runs each in a guest process of its own', async () => {
    const { vms } = await api.call('list', {});
    expect(new Set(vms.map((v) => v.pid)).size).toBe(5);
    expect(vms.map((v) => v.definition.app).sort()).toEqual(['db', 'file', 'game', 'mail', 'web']);
  });

  it('web: GET reads a file from the virtual disk, POST stores a body', async () => {
    const a = ok(await send('web1', { app: 'web', op: 'GET', path: '/index.html', bytes: 400 }));
    const b = ok(await send('web1', { app: 'web', op: 'GET', path: '/', bytes: 400 }));
    expect(a.status).toBe(200);
    expect(a.digest).toBe(b.digest);
    expect(ok(await send('web1', { app: 'web', op: 'GET', path: '/missing', bytes: 400 })).status).toBe(404);
    expect(
      ok(
        await send('web1', {
          app: 'web',
          op: 'POST',
          path: '/api/items',
          bytes: 900,
          body: new Uint8Array(500).fill(3),
        }),
      ).status,
    ).toBe(201);
  });

  it('mail: a submitted message is spooled and fetched back intact', async () => {
    const body = new TextEncoder().encode('Subject: hello\r\n\r\nfrom a test');
    const sub = ok(
      await send('mail1', { app: 'mail', op: 'SUBMIT', mailbox: 'alice', bytes: body.length + 200, body }),
    );
    expect(sub.status).toBe(250);
    const id = Number(sub.meta!['id']);
    const got = ok(await send('mail1', { app: 'mail', op: 'FETCH', mailbox: 'alice', id, bytes: 100 }));
    expect(new TextDecoder().decode(got.data)).toBe('Subject: hello\r\n\r\nfrom a test');
    expect(ok(await send('mail1', { app: 'mail', op: 'LIST', mailbox: 'alice', bytes: 100 })).meta!['count']).toBe(1);
    expect(ok(await send('mail1', { app: 'mail', op: 'FETCH', mailbox: 'alice', id: 999, bytes: 100 })).status).toBe(
      404,
    );
  });

  it('db: acknowledged puts read back, scan in order, and survive a killed guest', async () => {
    for (let i = 0; i < 20; i++) {
      const r = ok(
        await send('db1', {
          app: 'db',
          op: 'PUT',
          key: `k${String(i).padStart(3, '0')}`,
          value: new TextEncoder().encode(`v${i}`),
          bytes: 120,
        }),
      );
      expect(r.status).toBe(200);
    }
    expect(new TextDecoder().decode(ok(await send('db1', { app: 'db', op: 'GET', key: 'k007', bytes: 60 })).data)).toBe(
      'v7',
    );
    expect(ok(await send('db1', { app: 'db', op: 'SCAN', key: 'k010', limit: 5, bytes: 60 })).meta!['count']).toBe(5);
    const before = await api.call('info', { name: 'db1' });
    process.kill(before.pid!, 'SIGKILL');
    await waitFor(async () => (await api.call('info', { name: 'db1' })).state === 'crashed', 10_000, 'db1 crashed');
    await api.call('start', { name: 'db1' });
    await waitFor(
      async () => (await api.call('info', { name: 'db1' })).state === 'running',
      60_000,
      'db1 running again',
    );
    for (let i = 0; i < 20; i++) {
      const r = ok(await send('db1', { app: 'db', op: 'GET', key: `k${String(i).padStart(3, '0')}`, bytes: 60 }));
      expect(new TextDecoder().decode(r.data)).toBe(`v${i}`);
    }
  });

  it('file: an upload is written to disk and downloads with the same digest', async () => {
    const up = ok(
      await send('file1', { app: 'file', op: 'UPLOAD', name: 'report.pdf', size: 700_000, seed: 7, bytes: 700_000 }),
    );
    expect(up.status).toBe(201);
    const down = ok(await send('file1', { app: 'file', op: 'DOWNLOAD', name: 'report.pdf', bytes: 200 }));
    expect(down.digest).toBe(up.digest);
    expect(down.bytes).toBeGreaterThanOrEqual(700_000);
    expect(ok(await send('file1', { app: 'file', op: 'DOWNLOAD', name: 'nope', bytes: 200 })).status).toBe(404);
  });

  it('game: inputs are acknowledged by the tick loop, which reports its lateness', async () => {
    const join = ok(await send('game1', { app: 'game', op: 'JOIN', player: 'p1', seq: 0, bytes: 100 }));
    const input = ok(await send('game1', { app: 'game', op: 'INPUT', player: 'p1', seq: 1, bytes: 100 }));
    expect(Number(input.meta!['tick'])).toBeGreaterThan(Number(join.meta!['tick']));
    // The guest reports its figures with each heartbeat.
    await waitFor(
      async () => (await api.call('info', { name: 'game1' })).app['players'] === 1,
      10_000,
      'the player counted',
    );
    const figures = (await api.call('info', { name: 'game1' })).app;
    expect(figures['ticks']).toBeGreaterThan(20);
    expect(figures['tickLateP99Ms']).toBeGreaterThanOrEqual(0);
  });

  it('refuses a request of the wrong kind with an error reply', async () => {
    const r = await send('web1', { app: 'db', op: 'GET', key: 'x', bytes: 10 });
    expect(r.ok).toBe(false);
  });
});
