import { pack, unpack } from 'msgpackr';
import type { z } from 'zod';
import { ErrorCode, VmsimError } from './errors.ts';

/**
 * Plain msgpack on the wire: no shared record structures, because those break between
 * processes that did not see the same structures first.
 */
export function encode(value: unknown): Uint8Array {
  return pack(value);
}

/** Decodes without validation; throws BAD_PAYLOAD on bytes that are not msgpack. */
export function decodeRaw(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new VmsimError(ErrorCode.BAD_PAYLOAD, 'empty payload');
  try {
    return unpack(bytes);
  } catch (e) {
    throw new VmsimError(ErrorCode.BAD_PAYLOAD, `payload is not msgpack: ${(e as Error).message}`);
  }
}

/** Describes zod issues with the path of each bad field, e.g. "vms.0.memoryMiB: expected number". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** Decodes and validates; throws VmsimError with BAD_PAYLOAD or SCHEMA. */
export function decode<S extends z.ZodType>(bytes: Uint8Array, schema: S, what = 'message'): z.output<S> {
  return validate(decodeRaw(bytes), schema, what);
}

export function validate<S extends z.ZodType>(value: unknown, schema: S, what = 'message'): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new VmsimError(ErrorCode.SCHEMA, `invalid ${what}: ${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}
