import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import type { z } from 'zod';
import type { BusAuth } from './bus-auth.ts';
import { decode, encode, decodeRaw, validate } from './codec.ts';
import { ErrorCode, VmsimError, toVmsimError } from './errors.ts';
import type { Logger } from './logger.ts';
import { errorReply } from './protocol/reply.ts';
import { serviceEventSubject } from './protocol/events.ts';
import type { Namespace } from './subjects.ts';

export type { Msg, NatsConnection, Subscription };

export interface BusOptions {
  url: string;
  name: string;
  inboxPrefix?: string;
  /** Bus credentials (busAuthFromEnv); none for a server without auth. */
  auth?: BusAuth | undefined;
  logger: Logger;
  /** Keep retrying the first connection too (for services that may start before NATS). */
  waitOnFirstConnect?: boolean;
  /** Publish each reconnect as a service event of `svc` (a service allowed to publish events). */
  events?: { ns: Namespace; host: string; svc: string } | undefined;
  /** Called after each reconnect (subscriptions are back): re-check what may have been missed. */
  onReconnect?: (() => void) | undefined;
  /** Called when the connection is lost (before any reconnect attempt). */
  onDisconnect?: (() => void) | undefined;
}

/** A connection that reconnects for ever and logs what happens to it. */
export async function connectBus(opts: BusOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.url,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
    ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
    ...opts.auth,
  });
  // nats.js resubscribes every subscription (the request inbox too) when it reconnects.
  let downSince: number | null = null;
  void (async () => {
    for await (const s of nc.status()) {
      const server = 'server' in s ? String(s.server) : undefined;
      if (s.type === 'disconnect') {
        const first = downSince === null;
        downSince ??= Date.now();
        opts.logger.warn({ bus: s.type, server }, 'bus disconnected: reconnecting');
        if (first) {
          try {
            opts.onDisconnect?.();
          } catch (e) {
            opts.logger.error({ err: (e as Error).message }, 'on-disconnect hook failed');
          }
        }
      } else if (s.type === 'reconnect') {
        const downMs = downSince === null ? 0 : Date.now() - downSince;
        downSince = null;
        const reason = `bus connection lost for ${downMs} ms, reconnected to ${server ?? opts.url}`;
        opts.logger.warn({ bus: s.type, server, downMs }, reason);
        if (opts.events) {
          const { ns, host, svc } = opts.events;
          nc.publish(
            serviceEventSubject(ns, host, svc),
            encode({ t: Date.now(), host, svc, kind: 'bus-reconnected', reason }),
          );
        }
        try {
          opts.onReconnect?.();
        } catch (e) {
          opts.logger.error({ err: (e as Error).message }, 'after-reconnect check failed');
        }
      } else if (s.type === 'error') {
        opts.logger.warn({ bus: s.type, err: 'error' in s ? String(s.error) : undefined }, 'bus error');
      }
    }
  })().catch(() => undefined);
  return nc;
}

/**
 * Serves request/reply on one subject: every request is decoded and validated on arrival;
 * a bad one is answered with an error code, never thrown.
 */
export function serve<S extends z.ZodType, R>(
  nc: NatsConnection,
  subject: string,
  schema: S,
  handler: (req: z.output<S>, msg: Msg) => Promise<R> | R,
  logger: Logger,
  opts: { queue?: string } = {},
): Subscription {
  return nc.subscribe(subject, {
    ...(opts.queue ? { queue: opts.queue } : {}),
    callback: (err, msg) => {
      if (err) {
        logger.error({ err, subject }, 'subscription error');
        return;
      }
      void (async () => {
        let reply: unknown;
        try {
          const req = decode(msg.data, schema, `request on ${subject}`);
          const result = await handler(req, msg);
          reply = { ok: true, result };
        } catch (e) {
          const ve = toVmsimError(e);
          if (ve.code === ErrorCode.INTERNAL) logger.error({ err: e, subject }, 'handler failed');
          else logger.debug({ code: ve.code, msg: ve.message, subject }, 'request refused');
          reply = errorReply(ve.code, ve.message);
        }
        if (msg.reply) {
          try {
            msg.respond(encode(reply));
          } catch (e) {
            // Too large for the bus, most likely: the caller still gets an answer, with a code.
            logger.warn({ err: e, subject }, 'could not respond');
            try {
              msg.respond(encode(errorReply(ErrorCode.INTERNAL, `could not send the reply: ${(e as Error).message}`)));
            } catch {
              // The connection is closing: nobody can be answered now.
            }
          }
        }
      })();
    },
  });
}

/** Calls a served subject; an error reply becomes a VmsimError with its code. */
export async function call<T>(
  nc: NatsConnection,
  subject: string,
  request: unknown,
  resultSchema: z.ZodType<T>,
  timeoutMs = 5000,
): Promise<T> {
  let msg: Msg;
  try {
    msg = await nc.request(subject, encode(request), { timeout: timeoutMs });
  } catch (e) {
    const m = (e as Error).message;
    if (/no responders/i.test(m) || (e as { code?: string }).code === '503') {
      throw new VmsimError(ErrorCode.HOST_UNAVAILABLE, `nobody serves ${subject}`);
    }
    if (/timeout/i.test(m)) throw new VmsimError(ErrorCode.TIMEOUT, `no reply on ${subject} within ${timeoutMs} ms`);
    throw toVmsimError(e);
  }
  const raw = decodeRaw(msg.data) as { ok?: unknown; code?: unknown; message?: unknown; result?: unknown };
  if (raw && raw.ok === false) {
    const code = typeof raw.code === 'string' ? raw.code : ErrorCode.INTERNAL;
    throw new VmsimError(code as ErrorCode, String(raw.message ?? 'error'));
  }
  return validate(raw.result, resultSchema, `reply from ${subject}`);
}

/** Resolves when pred() holds, polling; rejects with a message after timeoutMs. */
export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline)
      throw new VmsimError(ErrorCode.TIMEOUT, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
