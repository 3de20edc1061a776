import { describe, expect, it } from 'vitest';
import { errors as natsErrors } from '@nats-io/nats-core';
import {
  decode,
  encode,
  ErrorCode,
  IngressRequest,
  namespace,
  type IngressReply,
  type Msg,
  type NatsConnection,
} from '@vmsim/shared';
import { createBusSender } from './bus-sender.ts';

type Request = NatsConnection['request'];

/** A connection whose request() answers with `answer`, recording what it was asked. */
function fakeNc(answer: (subject: string, data: Uint8Array) => Promise<Uint8Array>) {
  const calls: { subject: string; data: Uint8Array; timeout: number | undefined }[] = [];
  const request = (async (subject: string, payload?: unknown, opts?: { timeout?: number }) => {
    const data = payload as Uint8Array;
    calls.push({ subject, data, timeout: opts?.timeout });
    return { data: await answer(subject, data) } as Msg;
  }) as Request;
  return { nc: { request }, calls };
}

const ns = namespace('vmsim.t1');
const GET: IngressRequest = { app: 'web', op: 'GET', path: '/', bytes: 400 };

describe('createBusSender', () => {
  it('sends the encoded request on the ingress subject and returns the validated reply', async () => {
    const reply: IngressReply = { ok: true, status: 200, bytes: 1234, digest: 'abc' };
    const { nc, calls } = fakeNc(async () => encode(reply));
    const send = createBusSender(nc, ns, 'host1', { timeoutMs: 700 });
    const body = new Uint8Array([1, 2, 3]);
    expect(await send('web1', GET)).toEqual(reply);
    await send('web1', { app: 'web', op: 'POST', path: '/upload', bytes: 303, body });
    expect(calls.map((c) => c.subject)).toEqual(['vmsim.t1.net.host1.vm.web1', 'vmsim.t1.net.host1.vm.web1']);
    expect(calls[0]!.timeout).toBe(700);
    expect(decode(calls[0]!.data, IngressRequest)).toEqual(GET);
    const post = decode(calls[1]!.data, IngressRequest);
    expect(post.op).toBe('POST');
    expect([...(post.app === 'web' ? (post.body ?? []) : [])]).toEqual([1, 2, 3]);
  });

  it('passes error replies through', async () => {
    const { nc } = fakeNc(async () => encode({ ok: false, code: ErrorCode.VM_NOT_RUNNING, message: 'stopped' }));
    const send = createBusSender(nc, ns, 'host1', { timeoutMs: 100 });
    expect(await send('web1', GET)).toEqual({ ok: false, code: ErrorCode.VM_NOT_RUNNING, message: 'stopped' });
  });

  it.each([
    ['a NATS timeout', () => new natsErrors.TimeoutError(), ErrorCode.TIMEOUT],
    [
      'no responders',
      () => new natsErrors.RequestError('no responders', { cause: new natsErrors.NoRespondersError('x') }),
      ErrorCode.HOST_UNAVAILABLE,
    ],
    ['a closed connection', () => new natsErrors.ClosedConnectionError(), ErrorCode.HOST_UNAVAILABLE],
    ['anything else', () => new Error('weird'), ErrorCode.INTERNAL],
  ])('maps %s to an error reply instead of throwing', async (_what, make, code) => {
    const { nc } = fakeNc(() => Promise.reject(make()));
    const send = createBusSender(nc, ns, 'host1', { timeoutMs: 100 });
    const r = await send('web1', GET);
    expect(r.ok).toBe(false);
    expect(r.ok === false && r.code).toBe(code);
  });

  it.each([
    ['truncated msgpack', new Uint8Array([0x92, 0x01]), ErrorCode.BAD_PAYLOAD],
    ['an invalid reply', encode({ ok: true, status: 999, bytes: -1 }), ErrorCode.SCHEMA],
  ])('answers %s with its code', async (_what, bytes, code) => {
    const { nc } = fakeNc(async () => bytes);
    const send = createBusSender(nc, ns, 'host1', { timeoutMs: 100 });
    const r = await send('web1', GET);
    expect(r.ok === false && r.code).toBe(code);
  });

  it('refuses a VM name that is not a subject token without sending', async () => {
    const { nc, calls } = fakeNc(async () => encode({ ok: true, status: 200, bytes: 1 }));
    const send = createBusSender(nc, ns, 'host1', { timeoutMs: 100 });
    const r = await send('web.*', GET);
    expect(r.ok === false && r.code).toBe(ErrorCode.BAD_SUBJECT_TOKEN);
    expect(calls).toEqual([]);
  });
});
