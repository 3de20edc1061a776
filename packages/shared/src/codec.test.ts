import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decode, encode } from './codec.ts';
import { ErrorCode, VmsimError } from './errors.ts';
import { Hypercall } from './protocol/hypercall.ts';

describe('codec', () => {
  it('round-trips msgpack with bytes intact', () => {
    const data = new Uint8Array([1, 2, 3, 250]);
    const out = decode(encode({ op: 'disk.write', disk: 0, offset: 4096, data }), Hypercall);
    expect(out.op).toBe('disk.write');
    expect(out.op === 'disk.write' && [...out.data]).toEqual([1, 2, 3, 250]);
  });

  it('turns bytes that are not msgpack into BAD_PAYLOAD', () => {
    const err = (() => {
      try {
        decode(new Uint8Array([0x92, 0x01]), Hypercall);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(VmsimError);
    expect((err as VmsimError).code).toBe(ErrorCode.BAD_PAYLOAD);
    expect(() => decode(new Uint8Array(0), Hypercall)).toThrow(/empty/);
  });

  it('turns schema-invalid messages into SCHEMA errors naming the field', () => {
    try {
      decode(encode({ op: 'cpu', cycles: -5 }), Hypercall, 'hypercall');
      expect.unreachable();
    } catch (e) {
      expect((e as VmsimError).code).toBe(ErrorCode.SCHEMA);
      expect((e as Error).message).toMatch(/invalid hypercall: cycles/);
    }
    try {
      decode(encode({ a: { b: 'x' } }), z.object({ a: z.object({ b: z.number() }) }));
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toMatch(/a\.b:/);
    }
  });
});
