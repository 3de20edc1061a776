import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@vmsim/shared';
import { startNatsServer } from '@vmsim/cli';

export interface TestNats {
  url: string;
  /** Credentials the server wants (testcontainers' NATS module turns auth on). */
  auth: { user: string; pass: string } | undefined;
  kind: 'container' | 'binary';
  stop(): Promise<void>;
}

/** A client connection to the suite's server, with its credentials. */
export function connectTo(nats: TestNats): Promise<NatsConnection> {
  return connect({ servers: nats.url, ...nats.auth });
}

/** The one place that pins the NATS image the tests run (compose uses the same variable). */
export const NATS_IMAGE = process.env['NATS_IMAGE'] ?? 'nats:2.14';

/** Whether a Docker engine answers (`docker version` reaches a server). */
export function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe', timeout: 3000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A NATS server of this test suite's own: from testcontainers' NATS module when a Docker
 * engine answers (or VMSIM_TEST_NATS=container), otherwise a nats-server binary on a port
 * the kernel picks. VMSIM_TEST_NATS=binary forces the binary.
 */
export async function startTestNats(): Promise<TestNats> {
  const want = process.env['VMSIM_TEST_NATS'] ?? 'auto';
  if (want === 'container' || (want === 'auto' && dockerAnswers())) {
    process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';
    const { NatsContainer } = await import('@testcontainers/nats');
    const c = await new NatsContainer(NATS_IMAGE).withJetStream().start();
    const opts = c.getConnectionOptions();
    const server = Array.isArray(opts.servers) ? opts.servers[0] : opts.servers;
    const url = String(server).startsWith('nats://') ? String(server) : `nats://${server}`;
    const auth = opts.user ? { user: opts.user, pass: opts.pass ?? '' } : undefined;
    return { url, auth, kind: 'container', stop: async () => void (await c.stop()) };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-nats-'));
  const s = await startNatsServer({ storeDir: path.join(dir, 'js'), logFile: path.join(dir, 'nats.log') });
  return {
    url: s.url,
    auth: undefined,
    kind: 'binary',
    stop: async () => {
      await s.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A namespace no other test or run uses. */
export function testNamespace(): string {
  return `t${process.pid}x${Math.random().toString(36).slice(2, 8)}`;
}

export function tempHome(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-home-'));
}
