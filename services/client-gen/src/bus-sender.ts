import {
  decode,
  encode,
  errorReply,
  ErrorCode,
  ingressSubject,
  isVmsimError,
  toVmsimError,
  IngressReply,
  type IngressRequest,
  type Namespace,
  type NatsConnection,
} from '@vmsim/shared';
import type { Send } from './load.ts';

export interface BusSenderOptions {
  /** Wall ms NATS waits for a reply; keep it above the load's own (simulated) timeout. */
  timeoutMs: number;
}

/**
 * The send function of the load over NATS request/reply. It never throws: every failure
 * becomes an error reply with a code, so the load counts it by code.
 */
export function createBusSender(
  nc: Pick<NatsConnection, 'request'>,
  ns: Namespace,
  hostId: string,
  opts: BusSenderOptions,
): Send {
  const subjects = new Map<string, string>();
  return async (vm: string, request: IngressRequest): Promise<IngressReply> => {
    let subject = subjects.get(vm);
    try {
      if (subject === undefined) {
        subject = ingressSubject(ns, hostId, vm);
        subjects.set(vm, subject);
      }
      const msg = await nc.request(subject, encode(request), { timeout: opts.timeoutMs });
      return decode(msg.data, IngressReply, `ingress reply from ${subject}`);
    } catch (e) {
      // Our own errors (bad VM name, bad reply) keep their code.
      if (isVmsimError(e)) return errorReply(e.code, e.message);
      const code = classifyRequestError(e);
      if (code === ErrorCode.TIMEOUT) return errorReply(code, `no reply from ${vm} within ${opts.timeoutMs} ms`);
      if (code === ErrorCode.HOST_UNAVAILABLE)
        return errorReply(code, `nobody serves ${subject ?? vm}: ${(e as Error).message}`);
      const ve = toVmsimError(e);
      return errorReply(ve.code, ve.message);
    }
  };
}

/** NATS wraps its errors (RequestError with a cause), so the whole cause chain is looked at. */
export function classifyRequestError(e: unknown): ErrorCode | undefined {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = cur.cause, depth++) {
    const { name, message } = cur;
    if (name === 'NoResponders' || name === 'NoRespondersError' || /no responders/i.test(message))
      return ErrorCode.HOST_UNAVAILABLE;
    if (name === 'TimeoutError' || /^timeout$/i.test(message)) return ErrorCode.TIMEOUT;
    if (/closed connection|connection draining|disconnected/i.test(message)) return ErrorCode.HOST_UNAVAILABLE;
  }
  return undefined;
}
