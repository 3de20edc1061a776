import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LoggerOptions {
  svc: string;
  host: string;
  vm?: string;
  level?: string;
  destination?: DestinationStream;
}

/** JSON logs that always say which service, host and VM wrote them. */
export function createLogger(opts: LoggerOptions): Logger {
  const base: Record<string, unknown> = { svc: opts.svc, host: opts.host, pid: process.pid };
  if (opts.vm) base['vm'] = opts.vm;
  return pino({ level: opts.level ?? 'info', base, timestamp: pino.stdTimeFunctions.isoTime }, opts.destination);
}
