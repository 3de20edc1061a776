import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { serve, waitFor, type Msg, type NatsConnection } from '../bus.ts';
import { decodeRaw, encode } from '../codec.ts';
import { createLogger } from '../logger.ts';
import { Heartbeat } from './heartbeat.ts';
import { VnicTx } from './vnic.ts';
import { ErrorReply, errorReply } from './reply.ts';
import { HwDiskOp, MemAllocRequest, ReplySubject } from './hardware.ts';
import { MAX_IO_BYTES } from './hypercall.ts';

describe('bad input at the protocol edge', () => {
  it('a device answers only literal subjects: no whitespace, wildcard or empty token', () => {
    for (const ok of ['a', '_INBOX.x.y', 't1.vm.web.inbox.abc.7', 'x-y_z.ü'])
      expect(ReplySubject.safeParse(ok).success).toBe(true);
    for (const bad of ['', 'a b', 'a\r\nb', 'a.*', 'a.>', '>', 'a..b', '.a', 'a.', 'x'.repeat(513), 5, null]) {
      expect(ReplySubject.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it('disk operations and memory claims are bounded', () => {
    const base = { t: 1, vm: 'v', replyTo: 'r', waitMs: 0 };
    expect(HwDiskOp.safeParse({ ...base, op: 'read', offset: 0, length: MAX_IO_BYTES }).success).toBe(true);
    expect(HwDiskOp.safeParse({ ...base, op: 'read', offset: 0, length: MAX_IO_BYTES + 1 }).success).toBe(false);
    expect(HwDiskOp.safeParse({ ...base, op: 'read', offset: 2 ** 60, length: 1 }).success).toBe(false);
    expect(
      HwDiskOp.safeParse({ ...base, op: 'write', offset: 0, data: new Uint8Array(MAX_IO_BYTES + 1) }).success,
    ).toBe(false);
    expect(MemAllocRequest.safeParse({ owner: 'o', mib: 1e12 }).success).toBe(false);
  });

  it('an error reply quoting a huge input still fits ErrorReply', () => {
    const r = errorReply('VMSIM_ERR_NO_SUCH_VM', `no VM named ${'x'.repeat(10_000)}`);
    expect(r.message.length).toBeLessThanOrEqual(4096);
    expect(ErrorReply.safeParse(r).success).toBe(true);
  });

  it("a guest's answer cannot claim more bytes on the wire than a 1 GiB file", () => {
    expect(VnicTx.safeParse({ cid: 1, res: { ok: true, status: 200, bytes: 2 ** 30 + 512 } }).success).toBe(true);
    expect(VnicTx.safeParse({ cid: 1, res: { ok: true, status: 200, bytes: 2 ** 52 } }).success).toBe(false);
  });

  it('a heartbeat carries a bounded set of figures', () => {
    const hb = { seq: 1, pid: 1, uptimeMs: 1, lagMs: 0, served: 0, inFlight: 0 };
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i]));
    expect(Heartbeat.safeParse({ ...hb, app: { a: 1 } }).success).toBe(true);
    expect(Heartbeat.safeParse({ ...hb, app: many }).success).toBe(false);
    expect(Heartbeat.safeParse({ ...hb, app: { ['x'.repeat(65)]: 1 } }).success).toBe(false);
  });

  it('a served request whose reply cannot be sent still gets an error reply', async () => {
    let callback: ((err: Error | null, m: Msg) => void) | undefined;
    const nc = { subscribe: (_s: string, o: { callback: typeof callback }) => (callback = o.callback) };
    serve(
      nc as unknown as NatsConnection,
      's',
      z.object({}),
      () => ({ big: true }),
      createLogger({ svc: 't', host: 'h', level: 'silent' }),
    );
    const answers: unknown[] = [];
    let first = true;
    const respond = (d: Uint8Array): boolean => {
      if (first) {
        first = false;
        throw new Error('max_payload size exceeded');
      }
      answers.push(decodeRaw(d));
      return true;
    };
    callback!(null, { subject: 's', reply: 'r', data: encode({}), respond } as unknown as Msg);
    await waitFor(() => answers.length > 0, 2_000, 'the error answer');
    expect(answers).toEqual([{ ok: false, code: 'VMSIM_ERR_INTERNAL', message: expect.stringMatching(/max_payload/) }]);
  });
});
