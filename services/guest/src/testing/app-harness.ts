import { VirtualClock, createLogger, createRng } from '@vmsim/shared';
import type { AppContext } from '../app.ts';
import type { Machine } from '../hypercalls.ts';
import type { OsProfile } from '../os-profiles.ts';
import type { FakeMachine } from './fake-machine.ts';

/**
 * Sits between an app and the FakeMachine: once switched off, the app's calls never
 * complete, as if the VM died with them in flight.
 */
export class PowerPlug implements Machine {
  on = true;
  private readonly m: FakeMachine;
  constructor(m: FakeMachine) {
    this.m = m;
  }
  private gate<T>(f: () => Promise<T>): Promise<T> {
    return this.on ? f() : new Promise<T>(() => {});
  }
  cpu(cycles: number): Promise<void> {
    return this.gate(() => this.m.cpu(cycles));
  }
  read(disk: number, offset: number, length: number): Promise<Uint8Array> {
    return this.gate(() => this.m.read(disk, offset, length));
  }
  write(disk: number, offset: number, data: Uint8Array): Promise<void> {
    return this.gate(() => this.m.write(disk, offset, data));
  }
  flush(disk: number): Promise<void> {
    return this.gate(() => this.m.flush(disk));
  }
}

/** An application's context for unit tests: a quiet logger, a virtual clock, disk 0. */
export function appContext(machine: Machine, os: OsProfile, diskBytes: number): AppContext {
  return {
    machine,
    os,
    clock: new VirtualClock(),
    logger: createLogger({ svc: 'test', host: 't', level: 'silent' }),
    disk: 0,
    diskBytes,
  };
}

/** Deterministic bytes for a name: xorshift32 seeded from the named stream (fast for large bodies). */
export function testBytes(seed: string, n: number): Uint8Array {
  let x = createRng(seed).int(0xffffffff) | 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
