import { ErrorCode, VmsimError } from './errors.ts';

/**
 * Every subject of the project is built from validated tokens here and in protocol/.
 * A token is what sits between dots; NATS gives '.', '*', '>' and whitespace meaning.
 */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

export function token(value: string, what: string): string {
  if (!TOKEN.test(value)) {
    throw new VmsimError(
      ErrorCode.BAD_SUBJECT_TOKEN,
      `${what} "${value}" must be 1-64 characters of letters, digits, '-' or '_'`,
    );
  }
  return value;
}

export function isToken(value: string): boolean {
  return TOKEN.test(value);
}

/** A namespace: one or more tokens joined by dots, e.g. "vmsim" or "vmsim.t42". */
export type Namespace = string & { readonly __ns: unique symbol };

export function namespace(value: string): Namespace {
  const parts = value.split('.');
  if (parts.length > 4)
    throw new VmsimError(ErrorCode.BAD_SUBJECT_TOKEN, `namespace "${value}" has more than 4 tokens`);
  for (const p of parts) token(p, 'namespace token');
  return value as Namespace;
}
