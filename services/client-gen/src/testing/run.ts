import { createRng, type IngressRequest } from '@vmsim/shared';
import { LoadRunner, type LoadRunnerOptions, type Send, type Summary } from '../load.ts';
import type { SteppedClock } from './stepped-clock.ts';

/** Runs a load on a stepped clock to its end (seeded 'apps' unless told). */
export async function runToEnd(
  opts: Omit<LoadRunnerOptions, 'clock' | 'rng' | 'send'> & { seed?: string },
  clock: SteppedClock,
  send: Send,
): Promise<Summary> {
  const runner = new LoadRunner({ clock, rng: createRng(opts.seed ?? 'apps'), send, ...opts });
  const done = runner.run();
  await clock.drain();
  return done;
}

/** Records every request as sent, then passes it on. */
export function recording(send: Send): { send: Send; sent: IngressRequest[] } {
  const sent: IngressRequest[] = [];
  return {
    sent,
    send: (vm, req) => {
      sent.push(req);
      return send(vm, req);
    },
  };
}
